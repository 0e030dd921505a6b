"""Benchmark: PagerDuty requests per connection-hour, today's full sync against check + directory.

Issue 11, item 3: "the large account's steady-state requests per hour <= 1/10 of today's".

Method (one run, both sides measured in it): the real read code (``read_snapshot``, the
directory read that every sync made until now, and ``read_check``, the on-call check) runs once
each against the simulator (in a thread, latency 0, its rate limit out of the way: this counts
requests, it does not time them), and the requests each made are counted by endpoint. An hour
is then counted, not waited for:

* old: a full snapshot every 60 s = 60 directory reads;
* new: a check every 60 s and the directory every 900 s (``RRPD_DIRECTORY_INTERVAL_SECONDS``),
  the directory read taking that minute's check's place: 4 directory reads + 56 checks.

Steady state: nobody new in PagerDuty. A check that meets an unknown person or a vanished
schedule adds one directory read (workers.sync.run.needs_directory); that is an event, not a
rate. On-demand reads (sync now, binding) are not in either figure.

Accounts: the large one of bench/bench_sync_large.py (``large_account``: 10,000 users, 1,000
schedules, 300 bound; its ``lower_bound`` formula is printed beside the count) and the small one
of bench/bench_sync_fleet.py (50 users, 10 schedules, 3 bound: ``fleet``'s first account).

  .venv/bin/python bench/bench_requests.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_sync_fleet as fleet_bench  # noqa: E402
import bench_sync_large as large_bench  # noqa: E402

from pagerduty_sim.generator import fleet, fleet_key, large_account  # noqa: E402
from pagerduty_sim.server import start_simulator  # noqa: E402
from workers.pagerduty.client import PagerDutyClient  # noqa: E402
from workers.pagerduty.records import Credential  # noqa: E402
from workers.pagerduty.snapshot import read_check, read_snapshot  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_requests.json"
INTERVAL_S, DIRECTORY_S, HOUR_S = 60, 900, 3600
NO_LIMIT = 1_000_000


def say(msg: str = "") -> None:
    print(msg, flush=True)


def hour(directory: int, check: int) -> tuple[int, int]:
    """(old, new) requests in one hour."""
    rounds = HOUR_S // INTERVAL_S
    directories = HOUR_S // DIRECTORY_S
    return rounds * directory, directories * directory + (rounds - directories) * check


def measure(scenario: Any, account: str, key: str, bound: list[str]) -> dict[str, Any]:
    acct = scenario.accounts[account]
    v3_bound = sorted(s for s in bound if acct.schedules[s].version == 3)
    with start_simulator(scenario, rate_limit_per_minute=NO_LIMIT, log_level="error") as sim:
        client = PagerDutyClient(sim.base_url, Credential(kind="api_key", secret=key))
        full = read_snapshot(client, bound=bound)
        check = read_check(client, bound=bound, v3_bound=v3_bound)
        assert not full.unreadable and not check.unreadable, (full.unreadable, check.unreadable)
        # Sanity: the check saw who is on call exactly as the full read did.
        assert {s: full.on_call(s) for s in bound} == {s: check.on_call(s) for s in bound}
    old, new = hour(full.requests_made, check.requests_made)
    in_policy = [s for s in bound if acct.schedules[s].version != 3 and _in_policy(acct, s)]
    return {
        "users": len(acct.users),
        "schedules": len(acct.schedules),
        "bound": len(bound),
        "bound_v3": len(v3_bound),
        "bound_v2_in_policy": len(in_policy),
        "directory_requests": full.requests_made,
        "directory_by_endpoint": dict(full.requests_by_endpoint),
        "check_requests": check.requests_made,
        "check_by_endpoint": dict(check.requests_by_endpoint),
        "old_per_hour": old,
        "new_per_hour": new,
        "ratio": new / old,
    }


def _in_policy(acct: Any, sid: str) -> bool:
    return bool(acct.policies_for_schedule(sid))


def main() -> int:
    large = large_account(10_000, 1_000, seed=0)
    # bench_sync_large.arrange's sample (same seed, same call) without its database set-up.
    sids = list(large.accounts[large_bench.ACCOUNT].schedules)
    large_bound = sorted(random.Random(0).sample(sids, 300))
    small = fleet(1, fleet_bench.USERS, fleet_bench.SCHEDULES)
    small_bound = [f"F{0:05d}S{k:04d}" for k in range(fleet_bench.BOUND)]

    out = {
        "small": measure(small, "fleet-0", fleet_key(0), small_bound),
        "large": measure(large, large_bench.ACCOUNT, large_bench.API_KEY, large_bound),
    }
    for name, r in out.items():
        say(
            f"{name}: {r['users']:,} users, {r['schedules']:,} schedules, {r['bound']} bound "
            f"({r['bound_v3']} v3)"
        )
        say(f"  directory read: {r['directory_requests']} requests {r['directory_by_endpoint']}")
        say(f"  on-call check:  {r['check_requests']} requests {r['check_by_endpoint']}")
        say(
            f"  per connection-hour: old {r['old_per_hour']:,} (full every {INTERVAL_S} s), "
            f"new {r['new_per_hour']:,} (check every {INTERVAL_S} s + directory every "
            f"{DIRECTORY_S} s): ratio {r['ratio']:.3f} (1/{1 / r['ratio']:.1f})"
        )
    big = out["large"]
    by = big["check_by_endpoint"]
    floor = sum(v for k, v in by.items() if k != "GET /schedules")
    say(
        f"large: of each check's {big['check_requests']} requests, {by.get('GET /schedules', 0)} "
        f"are the v2 schedule list (members within one interval); the other {floor} are the "
        "fewest PagerDuty's API allows for on-call (/oncalls batches, one detail per bound "
        "schedule /oncalls cannot answer, one per bound v3 schedule)"
    )
    goal = big["old_per_hour"] / 10
    say(
        f"goal <= 1/10 of today's = {goal:,.0f}/hour; floor with on-call alone every minute = "
        f"{60 * floor:,}/hour: {'met' if big['new_per_hour'] <= goal else 'NOT met'}"
    )
    # The share a cadence can reduce: everything but the per-minute on-call floor.
    rounds, directories = HOUR_S // INTERVAL_S, HOUR_S // DIRECTORY_S
    reducible_old = rounds * (big["directory_requests"] - floor)
    reducible_new = directories * (big["directory_requests"] - floor) + (
        rounds - directories
    ) * by.get("GET /schedules", 0)
    big["reducible_ratio"] = reducible_new / reducible_old
    say(
        f"reducible share (all but the on-call floor): old {reducible_old:,}/hour, new "
        f"{reducible_new:,}/hour: ratio {big['reducible_ratio']:.3f} "
        f"(1/{1 / big['reducible_ratio']:.1f})"
    )
    # A detail per bound v2 schedule (members without the list) would cost this per check:
    say(
        f"members by detail instead of the list: {big['bound_v2_in_policy']} more details vs "
        f"{by.get('GET /schedules', 0)} list pages per check"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    say(f"results: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

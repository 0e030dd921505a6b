"""Benchmark: PagerDuty requests per connection-hour, before and after, counted in one run.

Issue 21, item 3: "read only what can have changed, on the cadence it changes"; goal: large
account <= 2,200 requests per connection-hour (4,184 before), small <= 70 (128 before), at the
same freshness for who is on call.

Method: each side's real read code runs once per read kind against the simulator (in a thread,
latency 0, its rate limit out of the way: this counts requests, it does not time them), and the
requests each read made are counted by endpoint. The old side is ``--compare REF`` (default
``main``): its tree exported with ``git archive`` and run in a child process, so both sides read
the same simulated accounts in the same run. An hour is then counted, not waited for:

* old (REF): REF's own read code on the same cadences (main: the check over the 6-hour window
  in batches of 100 ids, every v3 detail in each directory read, users daily; before issue 21
  the check also read the v2 list and every bound v3 detail, the directory read listed the
  users): 4 directory reads + 56 checks (+ the daily extra where REF has one);
* new (this tree): the check every 60 s is ``/oncalls`` over now only (one second) for all
  bound schedules, v2 and v3, compared with the stored timeline (here: the full read's), in
  batches packed by the rows the previous check met (the first check, unpacked, is shown
  too), plus a detail only for those it did not show; the directory read every 900 s reads
  schedules, bound schedules' members and the handoff window, but lists the users and reads
  unbound v3 details only once a day: per hour 4 directory reads + 56 checks + 1/24 of that
  daily extra.

Issue 22: once an hour one directory read is the upcoming read (7 days of on-call instead of 6
hours, same requests, more ``/oncalls`` pages); it is read too, asserted to see the same on-call
now and to hand the handoff plan the same 6-hour shifts, and its extra requests are counted
once per hour (printed apart, and in the total).

The check is asserted to see the same on-call as a full read (who is on call is still read
every 60 s; the 6-hour handoff window is read again by a check only where on-call now differs
from the stored timeline, which in this steady state it never does).

Steady state: nobody new in PagerDuty. On-demand reads (sync now, binding: they list the users
as before) and someone met for the first time (one ``GET /users/{id}``, in a directory read
that the check turns into) are events, not rates: neither side counts them.

Accounts: the large one of bench/bench_sync_large.py (10,000 users, 1,000 schedules, 300
bound) and the small one of bench/bench_sync_fleet.py (50 users, 10 schedules, 3 bound).

  .venv/bin/python bench/bench_requests.py [--compare main]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "bench_requests.json"
INTERVAL_S, DIRECTORY_S, USERS_S, HOUR_S = 60, 900, 86_400, 3600
# Issue 22: one directory read an hour (RRPD_UPCOMING_INTERVAL_SECONDS) is the upcoming read.
UPCOMING_S = 3600
NO_LIMIT = 1_000_000


def say(msg: str = "") -> None:
    print(msg, flush=True)


def accounts() -> dict[str, tuple[Any, str, str, list[str]]]:
    """name -> (scenario, account id, key, bound schedule ids), as the fleet and large benches."""
    for path in (ROOT, ROOT / "bench"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import bench_sync_fleet as fleet_bench
    import bench_sync_large as large_bench

    from pagerduty_sim.generator import fleet, fleet_key, large_account

    large = large_account(10_000, 1_000, seed=0)
    # bench_sync_large.arrange's sample (same seed, same call) without its database set-up.
    sids = list(large.accounts[large_bench.ACCOUNT].schedules)
    large_bound = sorted(random.Random(0).sample(sids, 300))
    small = fleet(1, fleet_bench.USERS, fleet_bench.SCHEDULES)
    small_bound = [f"F{0:05d}S{k:04d}" for k in range(fleet_bench.BOUND)]
    return {
        "small": (small, "fleet-0", fleet_key(0), small_bound),
        "large": (large, large_bench.ACCOUNT, large_bench.API_KEY, large_bound),
    }


def measure() -> dict[str, Any]:
    """Both accounts read by whichever tree is first on ``sys.path`` (this one, or REF's)."""
    from pagerduty_sim.server import start_simulator
    from workers.pagerduty.client import PagerDutyClient
    from workers.pagerduty.records import Credential, Schedule
    from workers.pagerduty.snapshot import read_check, read_snapshot

    new = "known" in inspect.signature(read_check).parameters
    out: dict[str, Any] = {}
    for name, (scenario, account, key, bound) in accounts().items():
        acct = scenario.accounts[account]
        with start_simulator(scenario, rate_limit_per_minute=NO_LIMIT, log_level="error") as sim:
            client = PagerDutyClient(sim.base_url, Credential(kind="api_key", secret=key))
            full = read_snapshot(client, bound=bound)
            r: dict[str, Any] = {
                "users": len(acct.users),
                "schedules": len(acct.schedules),
                "bound": len(bound),
                "bound_v3": sum(1 for s in bound if acct.schedules[s].version == 3),
                "directory": dict(full.requests_by_endpoint),
            }
            if new:
                # What the mirror holds after that read: the check asks about these.
                known = [
                    Schedule(s.id, s.name, s.version, s.time_zone, s.members)
                    for s in full.schedules
                    if s.id in set(bound)
                ]
                params = inspect.signature(read_check).parameters
                if "rows_hint" in params:
                    # The stored timeline as that read planned it: /oncalls over now only,
                    # packed by the rows the previous check met (the first has none).
                    first = read_check(client, known=known, stored=_stored_of(full))  # type: ignore[call-arg]
                    r["check_unpacked"] = dict(first.requests_by_endpoint)
                    check = read_check(  # type: ignore[call-arg]
                        client, known=known, stored=_stored_of(full), rows_hint=first.oncall_rows
                    )
                elif "stored" in params:
                    check = read_check(client, known=known, stored=_stored_of(full))  # type: ignore[call-arg]
                else:
                    check = read_check(client, known=known)  # type: ignore[call-arg]
                members = read_snapshot(  # type: ignore[call-arg]
                    client,
                    bound=bound,
                    read_users=False,
                    known_users=_mirror_of(full),
                )
                r["members_read"] = dict(members.requests_by_endpoint)
                if "upcoming" in inspect.signature(read_snapshot).parameters:
                    # The same directory read over 7 days of on-call ("your shift moved").
                    upcoming = read_snapshot(  # type: ignore[call-arg]
                        client,
                        bound=bound,
                        read_users=False,
                        known_users=_mirror_of(full),
                        upcoming=timedelta(days=7),
                    )
                    assert {s: _ids(full, s) for s in bound} == {
                        s: _ids(upcoming, s) for s in bound
                    }
                    # The 6-hour plan it hands the handoffs is the 6-hour read's, shift for shift.
                    assert {s: set(full.timelines[s].shifts) for s in bound} == {
                        s: set(upcoming.timelines[s].shifts) for s in bound
                    }
                    r["upcoming_read"] = dict(upcoming.requests_by_endpoint)
            else:
                v3_bound = sorted(s for s in bound if acct.schedules[s].version == 3)
                check = read_check(client, bound=bound, v3_bound=v3_bound)  # type: ignore[call-arg]
            assert not full.unreadable, full.unreadable
            assert not check.unreadable, check.unreadable
            # Freshness: the check sees who is on call exactly as the full read did.
            assert {s: _ids(full, s) for s in bound} == {s: _ids(check, s) for s in bound}
            r["check"] = dict(check.requests_by_endpoint)
        out[name] = r
    return out


def _mirror_of(full: Any) -> Any:
    """The mirror's user lookup after ``full`` was applied (PagerDuty id -> active)."""
    mirrored = {u.id: u.active for u in full.users}
    return lambda ids: {i: mirrored[i] for i in ids if i in mirrored}


def _stored_of(full: Any) -> Any:
    """Who the stored timeline (``full``, applied) has on call at an instant, per schedule."""
    from workers.pagerduty.window import on_call_ids

    return lambda ids, at: {
        s: on_call_ids(full.timelines[s], at) for s in ids if s in full.timelines
    }


def _ids(snapshot: Any, schedule_id: str) -> set[str]:
    # Ids only: /oncalls names people, a v3 detail does not.
    return {u.id for u in snapshot.on_call(schedule_id)}


def per_hour(r: dict[str, Any]) -> float:
    """Requests per connection-hour of one side's measured reads (see the module docstring)."""
    rounds, directories = HOUR_S // INTERVAL_S, HOUR_S // DIRECTORY_S
    check = sum(r["check"].values())
    directory = sum(r["directory"].values())
    if "members_read" not in r:
        return float(directories * directory + (rounds - directories) * check)
    members = sum(r["members_read"].values())
    # One directory read a day lists the users instead of reading nobody by id.
    listing_extra = (directory - members) * HOUR_S / USERS_S
    return (
        directories * members + (rounds - directories) * check + listing_extra + upcoming_extra(r)
    )


def upcoming_extra(r: dict[str, Any]) -> float:
    """What the upcoming read adds per hour: it replaces one directory read per UPCOMING_S, so
    only its extra ``/oncalls`` pages count (its details cost one request whatever the window)."""
    if "upcoming_read" not in r:
        return 0.0
    extra = sum(r["upcoming_read"].values()) - sum(r["members_read"].values())
    return extra * HOUR_S / UPCOMING_S


def export_ref(ref: str) -> Path:
    """``ref``'s tree (``git archive``) in a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="rrpd-bench-requests-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def measure_ref(ref: str) -> dict[str, Any]:
    """``measure()`` run by ``ref``'s code in a child process; its JSON is the last line."""
    code = export_ref(ref)
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{code / 'bench'}"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def show(label: str, by_endpoint: dict[str, int]) -> str:
    return f"{label} {sum(by_endpoint.values())} {dict(sorted(by_endpoint.items()))}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default="main", help="the old side's git ref (main)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # REF's tree is first on PYTHONPATH; drop this file's directory so it is what imports.
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
        print(json.dumps(measure()))
        return 0
    sys.path.insert(0, str(ROOT))
    old, new = measure_ref(args.compare), measure()
    figures: dict[str, int] = {}
    for name in ("small", "large"):
        o, n = old[name], new[name]
        say(
            f"{name}: {n['users']:,} users, {n['schedules']:,} schedules, {n['bound']} bound "
            f"({n['bound_v3']} v3)"
        )
        say(f"  old ({args.compare}): " + show("check", o["check"]))
        say(f"  old ({args.compare}): " + show("directory read", o["directory"]))
        if "check_unpacked" in n:
            say("  new: " + show("check without kept row counts (once)", n["check_unpacked"]))
        say("  new: " + show("check", n["check"]))
        say("  new: " + show("directory read, users not due", n["members_read"]))
        say("  new: " + show("directory read listing the users (daily)", n["directory"]))
        if "upcoming_read" in n:
            say(
                "  new: "
                + show("upcoming read, 7 days (hourly, in place of one)", n["upcoming_read"])
            )
            say(f"  new: the upcoming read adds {upcoming_extra(n):,.0f} per connection-hour")
        o["per_hour"], n["per_hour"] = per_hour(o), per_hour(n)
        figures[name] = round(n["per_hour"])
        say(
            f"  per connection-hour: old {o['per_hour']:,.0f}, new {n['per_hour']:,.0f} "
            f"(x{n['per_hour'] / o['per_hour']:.3f})"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"compare": args.compare, "old": old, "new": new}, indent=2, sort_keys=True)
        + "\n"
    )
    say(f"results: {RESULTS.relative_to(ROOT)}; goals: large <= 2,200, small <= 70")
    say(f"requests/hour: large={figures['large']} small={figures['small']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

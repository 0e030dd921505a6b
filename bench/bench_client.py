"""Benchmark: our PagerDuty client against PagerDuty's official Python client (`pagerduty`).

Fetches one large simulated account (default 10,000 users, 1,000 schedules, 50 ms added latency
per request; the simulator runs as a subprocess so it does not share our GIL) and prints:

1. requests our ``read_snapshot`` made (every schedule bound, so every on-call is read) against
   the lower bound of docs/pagerduty-client.md ("Requests per sync");
2. wall time, ours against the official client fetching the same data from the same simulator,
   rate limit OFF (median of ``--repeat`` alternating runs) and the ratio;
3. rate limit ON (960/min): 429s each client received (counted by the simulator) and wall time
   against the rate-limit lower bound (requests / (limit / 60 s)). Ours paces itself with
   ``RedisRateLimiter`` (900/min, burst 50, scaled if ``--rate-limit`` is lowered) on local Redis.

This is a script that prints figures, not a test. Figures also go to
``bench/results/bench_client.json``. See bench/README.md.

    .venv/bin/python bench/bench_client.py                     # full run, ~3 minutes
    .venv/bin/python bench/bench_client.py --quick             # 2,000 users, limit off, ~10 s
    .venv/bin/python bench/bench_client.py --quick --rate-limit 120   # + limit on, ~3 min

The official client is installed into the running interpreter's environment on demand
(installed on first use into ``var/bench-official-client``, not the project's venv); it is a
benchmark-only dependency, not a project one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from pagerduty_sim.generator import large_account  # noqa: E402
from pagerduty_sim.scenario import Scenario  # noqa: E402
from pagerduty_sim.server import SimulatorHandle, start_simulator  # noqa: E402
from workers.pagerduty.client import ONCALLS_SCHEDULE_CHUNK, PagerDutyClient  # noqa: E402
from workers.pagerduty.errors import PaginationLimit  # noqa: E402
from workers.pagerduty.ratelimit import RedisRateLimiter  # noqa: E402
from workers.pagerduty.records import Credential  # noqa: E402
from workers.pagerduty.snapshot import DEFAULT_HORIZON, AccountSnapshot, read_snapshot  # noqa: E402
from workers.pagerduty.transport import MAX_OFFSET_WINDOW  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_client.json"
ACCOUNT = "large"  # the account id large_account() creates
OURS_KEY = ("bench-ours", "u+benchClientOurs0001")  # (label, key) added through the control API
OFFICIAL_KEY = ("bench-official", "u+benchClientOfficial01")
# Production: 900/min with burst 50 against PagerDuty's 960/min. A lowered simulator limit
# scales both, so "rate + burst" stays under the limit the way it does in production.
PROD_LIMIT, PROD_PER_MINUTE, PROD_BURST = 960, 900, 50


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- the official client ------------------------------------------------------------------------


# Installed beside the project, never into its virtual environment: the official client pulls
# in the "httpx2" fork, which would change what other libraries (authlib) use at run time.
OFFICIAL_DIR = Path(__file__).resolve().parent.parent / "var" / "bench-official-client"


def official_module() -> ModuleType:
    """Import PagerDuty's client from a private folder, installing it there if missing."""
    if not (OFFICIAL_DIR / "pagerduty").is_dir():
        say(
            f"installing PagerDuty's official client into {OFFICIAL_DIR} "
            "(benchmark only; not a project dependency, not in the project's venv)"
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(OFFICIAL_DIR),
                "pagerduty",
            ],
            check=True,
        )
    sys.path.insert(0, str(OFFICIAL_DIR))
    importlib.invalidate_caches()
    return importlib.import_module("pagerduty")


def official_client(pd: ModuleType, base_url: str, key: str) -> Any:
    client = pd.RestApiV2Client(key)
    # Its `url` setter insists on https://; the simulator speaks plain http on localhost.
    client._url = base_url
    return client


@dataclass
class OfficialData:
    users: list[dict[str, Any]]
    v2: list[dict[str, Any]]
    v3: list[dict[str, Any]]
    oncalls: list[dict[str, Any]]


def official_fetch(client: Any, moment: datetime, horizon: timedelta) -> OfficialData:
    """The same reads as ``read_snapshot`` with every schedule bound, written the way the
    official client is used: lists, v3 details, /oncalls in batches, and the detail of every
    v2 schedule /oncalls does not show."""
    window = {"since": iso(moment), "until": iso(moment + horizon), "time_zone": "UTC"}
    users = list(client.iter_all("users"))
    v2 = list(client.iter_all("schedules"))
    refs = list(client.iter_all("v3/schedules", page_size=1000))
    v3 = [
        client.rget(
            f"v3/schedules/{quote(ref['id'], safe='')}",
            params={"include[]": ["final_schedule", "users"], **window, "overflow": "true"},
        )
        for ref in refs
    ]
    in_policy = [s["id"] for s in v2 if s.get("escalation_policies")]
    oncalls: list[dict[str, Any]] = []
    for i in range(0, len(in_policy), ONCALLS_SCHEDULE_CHUNK):
        chunk = in_policy[i : i + ONCALLS_SCHEDULE_CHUNK]
        oncalls += client.iter_all(
            "oncalls", params={"schedule_ids[]": chunk, "include[]": ["users"], **window}
        )
    shown = {(o.get("schedule") or {}).get("id") for o in oncalls}
    for item in v2:
        if item["id"] not in shown:
            detail = client.rget(
                f"schedules/{quote(item['id'], safe='')}", params={**window, "overflow": "true"}
            )
            entries = (detail.get("final_schedule") or {}).get("rendered_schedule_entries") or []
            item["_entries"] = entries
    return OfficialData(users, v2, v3, oncalls)


# --- comparing what the two clients fetched -----------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)


def covers(start: Any, end: Any, moment: datetime) -> bool:
    s, e = parse_time(start), parse_time(end)
    return (s is None or s <= moment) and (e is None or moment < e)


View = tuple[frozenset[str], dict[str, tuple[frozenset[str], frozenset[str]]]]


def view_of_snapshot(snap: AccountSnapshot) -> View:
    return (
        frozenset(u.id for u in snap.users if u.active),
        {
            s.id: (
                frozenset(s.member_user_ids),
                frozenset(u.id for u in snap.on_call(s.id)),
            )
            for s in snap.schedules
        },
    )


def view_of_official(data: OfficialData, moment: datetime) -> View:
    schedules: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    on_call: dict[str, set[str]] = {}
    for o in data.oncalls:
        sid = (o.get("schedule") or {}).get("id")
        if sid and covers(o.get("start"), o.get("end"), moment):
            on_call.setdefault(sid, set()).add(o["user"]["id"])
    for item in data.v2:
        for e in item.get("_entries", []):
            if covers(e.get("start"), e.get("end"), moment):
                on_call.setdefault(item["id"], set()).add(e["user"]["id"])
        schedules[item["id"]] = (
            frozenset(u["id"] for u in item.get("users") or []),
            frozenset(on_call.get(item["id"], ())),
        )
    for item in data.v3:
        shifts = (item.get("final_schedule") or {}).get("computed_shift_assignments") or []
        people = [
            (a, a["member"]["user_id"])
            for a in shifts
            if a.get("member", {}).get("type") == "user_member"
        ]
        members = {
            m["user_id"]
            for rot in item.get("rotations") or []
            for ev in rot.get("events") or []
            for m in (ev.get("assignment_strategy") or {}).get("members") or []
            if m.get("type") == "user_member"
        }
        members |= {u["id"] for u in item.get("users") or []}
        members |= {uid for _, uid in people}
        schedules[item["id"]] = (
            frozenset(members),
            frozenset(
                uid for a, uid in people if covers(a.get("start_time"), a.get("end_time"), moment)
            ),
        )
    return frozenset(u["id"] for u in data.users), schedules


# --- the simulator ------------------------------------------------------------------------------


@dataclass
class Shape:
    users: int
    v2: int
    v3: int
    v2_in_policy: int = 0  # v2 schedules an escalation policy uses (shown by /oncalls)

    @property
    def lower_bound(self) -> int:
        """Every schedule bound: the lists (each at least 1), one detail per v3 schedule, one
        /oncalls per 50 v2 schedules in a policy, one detail per v2 schedule in none."""
        return (
            max(1, math.ceil(self.users / 100))
            + max(1, math.ceil(self.v2 / 100))
            + max(1, math.ceil(self.v3 / 1000))
            + self.v3
            + math.ceil(self.v2_in_policy / ONCALLS_SCHEDULE_CHUNK)
            + (self.v2 - self.v2_in_policy)
        )

    @property
    def bound_terms(self) -> str:
        return (
            f"{max(1, math.ceil(self.users / 100))} + {max(1, math.ceil(self.v2 / 100))} + "
            f"{max(1, math.ceil(self.v3 / 1000))} + {self.v3} + "
            f"{math.ceil(self.v2_in_policy / ONCALLS_SCHEDULE_CHUNK)} + "
            f"{self.v2 - self.v2_in_policy}"
        )


def shape_of(sc: Scenario) -> Shape:
    acct = sc.accounts[ACCOUNT]
    v3 = sum(1 for s in acct.schedules.values() if s.version == 3)
    used = {t.id for p in acct.escalation_policies.values() for rule in p.rules for t in rule}
    in_policy = sum(1 for sid, s in acct.schedules.items() if s.version != 3 and sid in used)
    return Shape(len(acct.users), len(acct.schedules) - v3, v3, in_policy)


def every_schedule(sc: Scenario) -> frozenset[str]:
    return frozenset(sc.accounts[ACCOUNT].schedules)


def control(sim: SimulatorHandle, method: str, path: str, body: Any = None) -> Any:
    resp = sim.control.request(method, path, json=body)
    resp.raise_for_status()
    return resp.json()


def add_bench_keys(sim: SimulatorHandle) -> None:
    """One key per client: the simulator keeps a rate-limit bucket and counters per key."""
    for label, key in (OURS_KEY, OFFICIAL_KEY):
        control(sim, "POST", "/api_keys", {"label": label, "key": key, "account": ACCOUNT})


def reset_counters(sim: SimulatorHandle) -> None:
    control(sim, "POST", "/stats/reset")
    control(sim, "POST", "/rate_limit/reset")


def sim_counts(sim: SimulatorHandle, label: str) -> tuple[int, int]:
    """(requests the simulator saw from ``label``, 429s it answered) since the last reset."""
    stats = control(sim, "GET", "/stats")
    return stats["by_credential"].get(label, 0), stats["by_status"].get("429", 0)


@dataclass
class Run:
    seconds: float
    requests: int  # as counted by the simulator (retries included)
    status_429: int
    client_count: int | None = None  # as counted by the client itself (ours only)
    extra: dict[str, Any] = field(default_factory=dict)


def timed(sim: SimulatorHandle, label: str, fn: Callable[[], Any]) -> tuple[Run, Any]:
    reset_counters(sim)
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    requests, n429 = sim_counts(sim, label)
    return Run(seconds, requests, n429), result


# --- part A: request count, wall time with the limit off, the 10,000-record cap -----------------


def part_a(args: argparse.Namespace, pd: ModuleType) -> dict[str, Any]:
    t0 = time.perf_counter()
    scenario = large_account(args.users, args.schedules, seed=0)
    shape = shape_of(scenario)
    bound = every_schedule(scenario)
    say(
        f"[A] account: {shape.users:,} users, {shape.v2:,} v2 + {shape.v3:,} v3 schedules; "
        f"starting simulator subprocess (latency {args.latency_ms} ms) ..."
    )
    with start_simulator(
        scenario, in_thread=False, latency_ms=args.latency_ms, startup_timeout=120.0
    ) as sim:
        say(
            f"[A] simulator ready in {time.perf_counter() - t0:.1f} s at {sim.base_url}; "
            "rate limit OFF"
        )
        control(sim, "POST", "/rate_limit", {"enabled": False})
        add_bench_keys(sim)
        moment = datetime.now(UTC).replace(microsecond=0)
        ours = PagerDutyClient(sim.base_url, Credential("api_key", OURS_KEY[1]))
        # The baseline in the same run: our client one request at a time (as before issue 11).
        ours_seq = PagerDutyClient(
            sim.base_url, Credential("api_key", OURS_KEY[1]), max_in_flight=1
        )
        theirs = official_client(pd, sim.base_url, OFFICIAL_KEY[1])
        try:
            # Open both connections first so neither timed run pays for a TCP handshake.
            ours.probe()
            next(iter(theirs.iter_all("users", page_size=1)))

            runs: dict[str, list[Run]] = {"ours": [], "official": [], "ours_seq": []}
            views: dict[str, View] = {}
            snapshot: AccountSnapshot | None = None

            def run_ours() -> None:
                nonlocal snapshot
                run, snap = timed(
                    sim, OURS_KEY[0], lambda: read_snapshot(ours, bound=bound, now=moment)
                )
                run.client_count = snap.requests_made
                run.extra["by_endpoint"] = dict(snap.requests_by_endpoint)
                runs["ours"].append(run)
                views["ours"], snapshot = view_of_snapshot(snap), snap
                say(f"[A]   ours      {run.seconds:7.2f} s  {run.requests} requests")

            def run_ours_seq() -> None:
                run, snap = timed(
                    sim, OURS_KEY[0], lambda: read_snapshot(ours_seq, bound=bound, now=moment)
                )
                run.client_count = snap.requests_made
                runs["ours_seq"].append(run)
                views["ours_seq"] = view_of_snapshot(snap)
                say(f"[A]   ours seq  {run.seconds:7.2f} s  {run.requests} requests")

            def run_official() -> None:
                run, data = timed(
                    sim, OFFICIAL_KEY[0], lambda: official_fetch(theirs, moment, DEFAULT_HORIZON)
                )
                runs["official"].append(run)
                views["official"] = view_of_official(data, moment)
                say(f"[A]   official  {run.seconds:7.2f} s  {run.requests} requests")

            for i in range(args.repeat):
                # Alternate who goes first, so drift (caches, CPU clock) does not favour one.
                steps = (run_ours, run_official, run_ours_seq)
                for step in steps if i % 2 == 0 else steps[::-1]:
                    step()
            same = views["ours"] == views["official"] == views["ours_seq"]
            assert snapshot is not None
            cap = cap_check(sim, ours, theirs, shape) if args.cap_check else None
        finally:
            theirs.close()
    if not same:
        say("[A] WARNING: the two clients did not fetch the same users/members/on-call sets")
    return {
        "shape": shape,
        "snapshot": snapshot,
        "runs": runs,
        "same_data": same,
        "cap": cap,
    }


def cap_check(
    sim: SimulatorHandle, ours: PagerDutyClient, theirs: Any, shape: Shape
) -> dict[str, Any]:
    """Add users until the account has 10,001 and list them with both clients (no latency)."""
    extra = MAX_OFFSET_WINDOW + 1 - shape.users
    if not 0 < extra <= 200:
        return {
            "skipped": f"only checked when the account has 9,801..10,000 users "
            f"(it has {shape.users:,})"
        }
    say(
        f"[A] cap check: adding {extra} user(s) -> {MAX_OFFSET_WINDOW + 1:,} users "
        "(latency 0 for this check)"
    )
    control(sim, "POST", "/settings", {"latency_ms": 0})
    for n in range(extra):
        control(
            sim,
            "POST",
            f"/accounts/{ACCOUNT}/users",
            {"id": f"PBENCH{n:04d}", "name": f"Cap {n}", "email": f"cap{n}@large.example"},
        )
    result: dict[str, Any] = {"users_in_account": MAX_OFFSET_WINDOW + 1}
    reset_counters(sim)
    try:
        got = ours.list_users()
        result["ours"] = f"returned {len(got):,} users (no error)"
    except PaginationLimit as exc:
        result["ours"] = f"PaginationLimit after {exc.fetched:,} users: {exc.message}"
    result["ours_requests"] = sim_counts(sim, OURS_KEY[0])[0]
    reset_counters(sim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = sum(1 for _ in theirs.iter_all("users"))
    result["official"] = f"returned {count:,} users, no exception"
    result["official_warnings"] = [str(w.message) for w in caught]
    result["official_requests"] = sim_counts(sim, OFFICIAL_KEY[0])[0]
    for n in range(extra):
        control(sim, "DELETE", f"/accounts/{ACCOUNT}/users/PBENCH{n:04d}")
    return result


# --- part B: rate limit on -----------------------------------------------------------------------


def part_b(args: argparse.Namespace, pd: ModuleType) -> dict[str, Any]:
    t0 = time.perf_counter()
    scenario = large_account(args.limit_users, args.limit_schedules, seed=1)
    for sched in scenario.accounts[ACCOUNT].schedules.values():
        sched.version = 3  # a fully upgraded account: one request per schedule
    shape = shape_of(scenario)
    bound = every_schedule(scenario)
    limit = args.rate_limit
    per_minute = max(1, PROD_PER_MINUTE * limit // PROD_LIMIT)
    burst = max(1, PROD_BURST * limit // PROD_LIMIT)
    say(
        f"[B] account: {shape.users:,} users, {shape.v3:,} v3 schedules "
        f"(>= {shape.lower_bound:,} requests); simulator limit {limit}/min; "
        f"our limiter {per_minute}/min, burst {burst}"
    )
    prefix = f"bench-client-{uuid.uuid4().hex[:12]}"
    limiter = RedisRateLimiter.from_url(
        args.redis_url, per_minute=per_minute, burst=burst, key_prefix=prefix
    )
    limiter._redis.ping()  # fail now, not by failing open in the middle of the run
    with start_simulator(
        scenario,
        in_thread=False,
        latency_ms=args.latency_ms,
        rate_limit_per_minute=limit,
        startup_timeout=120.0,
    ) as sim:
        say(f"[B] simulator ready in {time.perf_counter() - t0:.1f} s; rate limit ON")
        add_bench_keys(sim)
        moment = datetime.now(UTC).replace(microsecond=0)
        ours = PagerDutyClient(
            sim.base_url,
            Credential("api_key", OURS_KEY[1]),
            rate_limiter=limiter,
            rate_limit_key="bench",
        )
        theirs = official_client(pd, sim.base_url, OFFICIAL_KEY[1])
        try:
            run_ours, snap = timed(
                sim, OURS_KEY[0], lambda: read_snapshot(ours, bound=bound, now=moment)
            )
            run_ours.client_count = snap.requests_made
            say(
                f"[B]   ours      {run_ours.seconds:7.2f} s  {run_ours.requests} requests, "
                f"{run_ours.status_429} x 429"
            )
            run_official, data = timed(
                sim, OFFICIAL_KEY[0], lambda: official_fetch(theirs, moment, DEFAULT_HORIZON)
            )
            say(
                f"[B]   official  {run_official.seconds:7.2f} s  {run_official.requests} "
                f"requests, {run_official.status_429} x 429"
            )
            same = view_of_snapshot(snap) == view_of_official(data, moment)
        finally:
            theirs.close()
            limiter._redis.delete(*limiter.keys_for("bench"))
    return {
        "shape": shape,
        "limit": limit,
        "per_minute": per_minute,
        "burst": burst,
        "bound_seconds": shape.lower_bound / (limit / 60),
        "window_floor_seconds": fixed_window_floor(shape.lower_bound, limit, args.latency_ms),
        "ours": run_ours,
        "official": run_official,
        "same_data": same,
    }


def fixed_window_floor(requests: int, limit: int, latency_ms: int) -> float:
    """Earliest finish against the simulator's fixed one-minute windows (opened by a bucket's
    first request), for a client whose requests take exactly the added latency: ``limit`` in each
    full window, then wait for the next. Below the rate bound when requests > limit, because a
    fixed window lets a full window's worth through right after the previous one."""
    full_windows = (requests - 1) // limit
    return 60.0 * full_windows + (requests - full_windows * limit) * latency_ms / 1000


# --- report -------------------------------------------------------------------------------------


def med(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def report(args: argparse.Namespace, a: dict[str, Any], b: dict[str, Any] | None) -> dict[str, Any]:
    shape: Shape = a["shape"]
    snap: AccountSnapshot = a["snapshot"]
    ours_a, off_a = a["runs"]["ours"], a["runs"]["official"]
    t_ours, t_off = med(ours_a), med(off_a)
    t_seq = med(a["runs"]["ours_seq"])
    rows: list[tuple[str, str, str, str]] = [
        (
            "requests made, one snapshot",
            f"{snap.requests_made:,}",
            f"{off_a[0].requests:,}",
            f"lower bound {shape.lower_bound:,} = {shape.bound_terms}",
        ),
        (
            f"wall time, limit OFF (median of {args.repeat})",
            f"{t_ours:.2f} s",
            f"{t_off:.2f} s",
            (
                f"official / ours = {t_off / t_ours:.2f}x; ours sequential (1 in flight) "
                f"{t_seq:.2f} s = {t_seq / t_ours:.2f}x ours; latency floor "
                f"{shape.lower_bound:,} x {args.latency_ms} ms = "
                f"{shape.lower_bound * args.latency_ms / 1000:.2f} s"
            ),
        ),
    ]
    if b is not None:
        lb = b["bound_seconds"]
        bs: Shape = b["shape"]
        rows += [
            (
                f"429s received, limit ON ({b['limit']}/min)",
                f"{b['ours'].status_429}",
                f"{b['official'].status_429}",
                f"requests sent: ours {b['ours'].requests:,}, official {b['official'].requests:,}",
            ),
            (
                "wall time, limit ON",
                f"{b['ours'].seconds:.2f} s",
                f"{b['official'].seconds:.2f} s",
                (
                    f"bound {bs.lower_bound:,} / {b['limit'] / 60:g} per s = {lb:.2f} s "
                    f"(ours {b['ours'].seconds / lb:.2f}x, official "
                    f"{b['official'].seconds / lb:.2f}x)"
                ),
            ),
        ]
    widths = [max(len(r[i]) for r in [("", "ours", "official", ""), *rows]) for i in range(3)]
    say()
    say(f"{'':<{widths[0]}}  {'ours':>{widths[1]}}  {'official':>{widths[2]}}  notes")
    for r in rows:
        say(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    say()
    say(
        f"A: {shape.users:,} users, {shape.v2:,} v2 + {shape.v3:,} v3 schedules, "
        f"latency {args.latency_ms} ms; same data fetched by both: {a['same_data']}; "
        f"runs ours {[round(r.seconds, 2) for r in ours_a]}, "
        f"official {[round(r.seconds, 2) for r in off_a]}"
    )
    say(f"   ours by endpoint: {dict(snap.requests_by_endpoint)}")
    if b is not None:
        bs = b["shape"]
        say(
            f"B: {bs.users:,} users, {bs.v3:,} v3 schedules (fully upgraded account), "
            f"simulator limit {b['limit']}/min (fixed one-minute windows), our limiter "
            f"{b['per_minute']}/min burst {b['burst']}; same data fetched by both: "
            f"{b['same_data']}"
        )
        say(
            f"   the rate bound assumes the limit is a rate; the simulator's fixed windows let a "
            f"client finish as early as {b['window_floor_seconds']:.2f} s (60 s x full windows "
            f"+ the rest at {args.latency_ms} ms each)"
        )
    cap = a["cap"]
    if cap is not None:
        if "skipped" in cap:
            say(f"10,000-record cap: skipped ({cap['skipped']})")
        else:
            say(
                f"10,000-record cap ({cap['users_in_account']:,} users): ours -> {cap['ours']} "
                f"[{cap['ours_requests']} requests]; official -> {cap['official']} "
                f"[{cap['official_requests']} requests], warnings: {cap['official_warnings']}"
            )

    def run_json(r: Run) -> dict[str, Any]:
        return {
            "seconds": round(r.seconds, 3),
            "requests": r.requests,
            "status_429": r.status_429,
            "client_count": r.client_count,
        }

    out: dict[str, Any] = {
        "generated_at": iso(datetime.now(UTC).replace(microsecond=0)),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pagerduty": getattr(sys.modules.get("pagerduty"), "__version__", None),
            "httpx": httpx.__version__,
            "git_commit": git_head(),
        },
        "latency_ms": args.latency_ms,
        "latency_floor_seconds": round(shape.lower_bound * args.latency_ms / 1000, 3),
        "requests": {
            "account": {"users": shape.users, "v2_schedules": shape.v2, "v3_schedules": shape.v3},
            "ours": snap.requests_made,
            "ours_by_endpoint": dict(snap.requests_by_endpoint),
            "official": off_a[0].requests,
            "lower_bound": shape.lower_bound,
        },
        "limit_off": {
            "repeat": args.repeat,
            "ours": [run_json(r) for r in ours_a],
            "official": [run_json(r) for r in off_a],
            "ours_median_seconds": round(t_ours, 3),
            "official_median_seconds": round(t_off, 3),
            "official_over_ours": round(t_off / t_ours, 3),
            "same_data": a["same_data"],
        },
        "pagination_cap": cap,
        "limit_on": None,
    }
    if b is not None:
        bs = b["shape"]
        out["limit_on"] = {
            "account": {"users": bs.users, "v2_schedules": bs.v2, "v3_schedules": bs.v3},
            "simulator_limit_per_minute": b["limit"],
            "our_limiter": {"per_minute": b["per_minute"], "burst": b["burst"]},
            "lower_bound_requests": bs.lower_bound,
            "lower_bound_seconds": round(b["bound_seconds"], 3),
            "fixed_window_floor_seconds": round(b["window_floor_seconds"], 3),
            "ours": run_json(b["ours"]),
            "official": run_json(b["official"]),
            "ours_over_bound": round(b["ours"].seconds / b["bound_seconds"], 3),
            "official_over_bound": round(b["official"].seconds / b["bound_seconds"], 3),
            "same_data": b["same_data"],
        }
    return out


def git_head() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="2,000 users / 200 schedules, one run each; part B (limit on) only with "
        "--rate-limit, then on 1,000 users / 130 v3 schedules",
    )
    p.add_argument("--users", type=int, help="A: users (default 10,000; quick 2,000)")
    p.add_argument("--schedules", type=int, help="A: schedules (default 1,000; quick 200)")
    p.add_argument("--repeat", type=int, help="A: timed runs per client (default 2; quick 1)")
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--limit-users", type=int, help="B: users (default 10,000; quick 1,000)")
    p.add_argument(
        "--limit-schedules", type=int, help="B: schedules, all v3 (default 1,000; quick 130)"
    )
    p.add_argument("--rate-limit", type=int, help="B: simulator requests per minute (default 960)")
    p.add_argument("--skip-rate-limit", action="store_true", help="skip part B")
    p.add_argument(
        "--no-cap-check",
        dest="cap_check",
        action="store_false",
        help="skip the 10,001-user pagination-cap check",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    quick = args.quick
    if quick and args.rate_limit is None:
        args.skip_rate_limit = True
    defaults = {
        "users": 2_000 if quick else 10_000,
        "schedules": 200 if quick else 1_000,
        "repeat": 1 if quick else 2,
        "limit_users": 1_000 if quick else 10_000,
        "limit_schedules": 130 if quick else 1_000,
        "rate_limit": 120 if quick else PROD_LIMIT,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    pd = official_module()
    say(
        f"official client: pagerduty {getattr(pd, '__version__', '?')}; "
        f"ours: workers.pagerduty.client; {os.cpu_count()} CPUs"
    )
    a = part_a(args, pd)
    if args.skip_rate_limit:
        b = None
        say(
            "[B] skipped"
            + (
                " in --quick: with the limit on, a run takes over a minute per client at any "
                "size (the limit is per minute); add --rate-limit N to include it"
                if args.quick
                else ""
            )
        )
    else:
        b = part_b(args, pd)
    out = report(args, a, b)
    out["total_seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    say(f"figures written to {shown}; total {out['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

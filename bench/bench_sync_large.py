"""Benchmark: one large account synced end to end (fetch from PagerDuty, apply to PostgreSQL).

Issue: "One large account (10,000 users, 1,000 schedules, 300 bound rotations): requests made
against the lower bound, wall time, peak memory."

Set-up (all of it made for the run and removed at the end):

* a fresh PostgreSQL database ``rrpd_bench_large_<random>`` migrated with
  ``workers.core.migrate.upgrade`` (dropped at the end), and a Redis key prefix of its own
  (deleted);
* the simulator as a **subprocess**: ``start_simulator(large_account(U, S, seed), in_thread=False,
  latency_ms=50, rate_limit_per_minute=960)`` -- PagerDuty's real limit is on;
* one workspace whose members have the emails of 80 % of the account's users (every fifth user
  has no member: matching has real work and unmatched people exist), one API-key connection in
  status ``connected`` on the account's key, and 300 rotations bound to 300 of its schedules
  (a seeded sample that includes v3 schedules).

Each sync runs in a **fresh child Python process** that calls ``workers.sync.run.sync_connection``
directly (no Celery; the same code path the task runs, with the shared Redis rate limiter at its
default 900/min and the Redis coalescing lock), so that process's peak RSS is the sync's own.
The child also times the fetch (``read_snapshot``) and the apply transaction, and
counts SQL statements with a ``before_cursor_execute`` listener. Rows written are counted by
PostgreSQL itself (``pg_stat_user_tables`` deltas, read once every backend of the run database
has exited and flushed its statistics).

1. first sync: everything is an insert;
2. the same sync again with nothing changed upstream: rows written besides ``sync_runs`` (goal 0);
3. after a small upstream change through the simulator's control API: one override putting a
   matched user on call now on a bound v2 schedule, and one user renamed.

  .venv/bin/python bench/bench_sync_large.py          # 10,000 users, 1,000 schedules, ~40 s
  .venv/bin/python bench/bench_sync_large.py --quick  # 2,000 users, 200 schedules, 60 bound: ~12 s
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUN = uuid.uuid4().hex[:8]
PG_ADMIN_URL = os.environ.get(
    "RRPD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RRPD_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DB_NAME = f"rrpd_bench_large_{RUN}"
RESULTS = ROOT / "bench" / "results" / "bench_sync_large.json"
ACCOUNT = "large"
API_KEY = "u+largeReadOnlyKey000001"  # large_account's key (label large-readonly)
KEY_LABEL = "large-readonly"
SIM_LIMIT = 960  # PagerDuty's documented limit per credential
LIMITER_BURST = 10  # RedisRateLimiter's default burst


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- the child: one sync, measured from inside its own process ----------------------------------


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_VERB = re.compile(r"^\s*(INSERT INTO|UPDATE|DELETE FROM|SELECT)\s+(\S+)?", re.IGNORECASE)
_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)


def child(connection_id: str, kind: str, out_path: Path, trace: bool) -> int:
    """Run one ``sync_connection`` and write what it measured to ``out_path`` (JSON)."""
    import resource
    import tracemalloc

    from sqlalchemy import event, text

    from workers.core import redis as shared_redis
    from workers.core.db import get_engine
    from workers.pagerduty.client import PagerDutyClient
    from workers.pagerduty.transport import shared_http_client
    from workers.sync import records as sync_records
    from workers.sync import run as sync_mod

    # Warm what any long-lived worker process already has: imports, a database connection,
    # Redis, the pooled HTTP client. The RSS after this is the baseline the sync adds to.
    engine = get_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    shared_redis.client().ping()
    shared_http_client()
    rss_before = _rss_mib()

    statements: dict[str, int] = {}
    executemany_sets = 0

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        nonlocal executemany_sets
        m = _VERB.match(statement)
        if m is None:
            label = "other"
        elif m.group(1).upper() == "SELECT":
            f = _FROM.search(statement)
            label = f"SELECT {f.group(1) if f else '?'}"
        else:
            table = (m.group(2) or "?").strip('"')
            label = f"{m.group(1).split()[0].upper()} {table}"
        statements[label] = statements.get(label, 0) + 1
        if executemany:
            executemany_sets += len(parameters)

    timings: dict[str, float] = {"fetch_s": 0.0, "apply_snapshot_s": 0.0, "apply_txn_s": 0.0}
    clients: list[PagerDutyClient] = []

    def client_factory(cred: Any) -> PagerDutyClient:
        client = sync_mod.default_client(cred)
        clients.append(client)
        return client

    real_read = sync_mod.read_snapshot

    def timed_read(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_read(*a, **kw)
        finally:
            timings["fetch_s"] += time.perf_counter() - t

    sync_mod.read_snapshot = timed_read  # module global looked up at call time

    real_apply_snapshot = sync_records.apply_snapshot
    real_apply_txn = sync_records.RunContext.apply

    def timed_apply_snapshot(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_apply_snapshot(*a, **kw)
        finally:
            timings["apply_snapshot_s"] += time.perf_counter() - t

    def timed_apply_txn(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_apply_txn(self, *a, **kw)
        finally:
            timings["apply_txn_s"] += time.perf_counter() - t

    sync_records.apply_snapshot = timed_apply_snapshot  # module global looked up at call time
    sync_records.RunContext.apply = timed_apply_txn  # type: ignore[method-assign]

    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = sync_mod.sync_connection(connection_id, kind=kind, client_factory=client_factory)
    wall = time.perf_counter() - t0
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()

    by_endpoint: dict[str, int] = {}
    rate_limited: dict[str, int] = {}
    for c in clients:
        for endpoint, n in c.requests_by_endpoint.items():
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + n
        # 429s the client received, the ones it retried itself included
        for endpoint, n in getattr(c, "rate_limited_by_endpoint", {}).items():
            rate_limited[endpoint] = rate_limited.get(endpoint, 0) + n
    out = {
        "result": result.as_dict(),
        "wall_s": wall,
        **timings,
        "requests_by_endpoint": by_endpoint,
        "client_429s": sum(rate_limited.values()),
        "statements": dict(sorted(statements.items())),
        "statements_total": sum(statements.values()),
        "executemany_parameter_sets": executemany_sets,
        "rss_before_mib": rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tracemalloc_peak_mib": traced_peak,
    }
    out_path.write_text(json.dumps(out))
    return 0


# --- the parent: database, simulator, rows, phases ----------------------------------------------


def _configure_environment() -> None:
    """Before any project import: settings are read at import time. Children inherit this."""
    from cryptography.fernet import Fernet

    base, _, _ = PG_ADMIN_URL.rpartition("/")
    var_dir = Path(tempfile.gettempdir()) / f"rrpd-bench-large-{RUN}"
    os.environ.update(
        {
            "RRPD_ENV": "test",
            "RRPD_DATABASE_URL": f"{base}/{DB_NAME}",
            "RRPD_BROKER_URL": f"{REDIS_URL}/0",
            "RRPD_RESULT_BACKEND": f"{REDIS_URL}/1",
            "RRPD_REDIS_KEY_PREFIX": f"rrpd-bench-large-{RUN}",
            "RRPD_ENCRYPTION_KEYS": f"bench={Fernet.generate_key().decode()}",
            "RRPD_API_JWT_SECRET": uuid.uuid4().hex * 2,
            "RRPD_VAR_DIR": str(var_dir),
            "RRPD_LOG_FORMAT": "json",
        }
    )
    var_dir.mkdir(parents=True, exist_ok=True)


def _pg_url(db: str | None = None) -> str:
    base, _, admin_db = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{db or admin_db}".replace("postgresql://", "postgresql+psycopg://", 1)


def admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(_pg_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def reader() -> Any:
    """A NullPool engine on the run's database, for reads between phases."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(_pg_url(DB_NAME), poolclass=NullPool)


def settled_table_writes(timeout: float = 30.0) -> dict[str, int]:
    """Rows inserted + updated + deleted per table, as PostgreSQL counted them.

    A backend flushes its pending table statistics when it exits, so wait until no other backend
    is connected to the run's database (the child has exited; the parent holds no pooled
    connection), then read.
    """
    from sqlalchemy import text

    eng = reader()
    try:
        with eng.connect() as conn:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                others = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                if not others:
                    break
                time.sleep(0.1)
            else:
                raise TimeoutError("backends of the run's database did not exit")
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            rows = conn.execute(
                text(
                    "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                    "WHERE schemaname = 'public'"
                )
            ).all()
    finally:
        eng.dispose()
    return {name: int(n) for name, n in rows}


def lower_bound(users: int, v2: int, v3: int, bound_in_policy: int, bound_no_policy: int) -> int:
    """docs/pagerduty-client.md, "Requests per sync": the lists (each ceil >= 1), one detail per
    v3 schedule, one /oncalls request per 50 bound v2 schedules an escalation policy uses, and
    one detail per bound v2 schedule no policy uses (/oncalls never shows those)."""
    return (
        max(1, math.ceil(users / 100))
        + max(1, math.ceil(v2 / 100))
        + max(1, math.ceil(v3 / 1000))
        + v3
        + math.ceil(bound_in_policy / 50)
        + bound_no_policy
    )


def arrange(
    scenario: Any, member_share: float, n_bound: int, seed: int
) -> tuple[uuid.UUID, list[str], set[str]]:
    """Workspace, members, the connected connection and the bound rotations, in bulk.

    Returns (connection id, bound schedule ids, PagerDuty ids of the users that have a member).
    """
    from sqlalchemy import insert

    from models import (
        Member,
        PagerDutyConnection,
        Rotation,
        Workspace,
        normalize_email,
        utcnow,
    )
    from workers.core.db import get_engine, transaction

    acct = scenario.accounts[ACCOUNT]
    now = utcnow()
    ws = uuid.uuid4()
    # Every fifth user unmatched for 80 %; in general the first round(share*5) of each five.
    per_five = round(member_share * 5)
    matched = [u for j, u in enumerate(acct.users.values()) if j % 5 < per_five]
    members = [
        {
            "id": uuid.uuid4(),
            "workspace_id": ws,
            "email": u.email,
            "email_key": normalize_email(u.email),
            "display_name": u.name,
            "role": "member",
        }
        for u in matched
    ]
    rng = random.Random(seed)
    sids = list(acct.schedules)
    bound = sorted(rng.sample(sids, min(n_bound, len(sids))))
    cid = uuid.uuid4()
    with transaction() as s:
        s.execute(insert(Workspace), [{"id": ws, "name": "Large account"}])
        for start in range(0, len(members), 5_000):
            s.execute(insert(Member), members[start : start + 5_000])
        s.execute(
            insert(PagerDutyConnection),
            [
                {
                    "id": cid,
                    "workspace_id": ws,
                    "auth_method": "api_key",
                    "region": "us",
                    "status": "connected",
                    "generation": 1,
                    "api_key": API_KEY,
                    "key_level": "account",
                    "connected_at": now,
                    "status_changed_at": now,
                    "consecutive_sync_failures": 0,
                }
            ],
        )
        s.execute(
            insert(Rotation),
            [
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws,
                    "name": f"Rotation {k:03d} ({sid})",
                    "mode": "pagerduty",
                    "pagerduty_schedule_id": sid,
                    "bound_at": now,
                }
                for k, sid in enumerate(bound)
            ],
        )
    get_engine().dispose()  # no pooled backend of ours may hold unflushed statistics
    return cid, bound, {u.id for u in matched}


def run_phase(
    label: str, kind: str, cid: uuid.UUID, sim: Any, trace: bool, log_dir: Path
) -> dict[str, Any]:
    from sqlalchemy import select

    from models import SyncRun

    before = settled_table_writes()
    control(sim, "POST", "/stats/reset")
    out_path = log_dir / f"child-{label.split()[0]}-{int(time.time() * 1000)}.json"
    log_path = out_path.with_suffix(".log")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(cid), "--kind", kind]
    cmd += ["--child-out", str(out_path)] + (["--tracemalloc"] if trace else [])
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=dict(os.environ), stdout=log, stderr=log, check=False
        )
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: child exited {proc.returncode}; see {log_path}")
    measured = json.loads(out_path.read_text())
    stats = control(sim, "GET", "/stats")
    after = settled_table_writes()
    writes = {t: after.get(t, 0) - before.get(t, 0) for t in after}
    writes = {t: n for t, n in sorted(writes.items()) if n}
    eng = reader()
    try:
        with eng.connect() as conn:
            run = conn.execute(
                select(
                    SyncRun.status,
                    SyncRun.rows_created,
                    SyncRun.rows_updated,
                    SyncRun.rows_deleted,
                    SyncRun.requests_made,
                    SyncRun.duration_ms,
                    SyncRun.error,
                ).where(SyncRun.id == uuid.UUID(measured["result"]["sync_run_id"]))
            ).one()
    finally:
        eng.dispose()
    return {
        "label": label,
        "kind": kind,
        **measured,
        "child_process_s": process_s,
        "sync_run": {
            "status": run.status,
            "created": run.rows_created,
            "updated": run.rows_updated,
            "deleted": run.rows_deleted,
            "requests_made": run.requests_made,
            "duration_ms": run.duration_ms,
            "error": run.error,
        },
        "simulator": {
            "requests": stats["by_credential"].get(KEY_LABEL, 0),
            "status_429": stats["by_status"].get("429", 0),
            "by_status": stats["by_status"],
        },
        "rows_written": writes,
        "rows_written_besides_sync_runs": sum(n for t, n in writes.items() if t != "sync_runs"),
    }


def control(sim: Any, method: str, path: str, body: Any = None) -> Any:
    resp = sim.control.request(method, path, json=body)
    resp.raise_for_status()
    return resp.json()


def small_change(sim: Any, bound: list[str], v3: set[str], matched: set[str], seed: int) -> dict:
    """One override (a matched user on call now, 1 h) on a bound v2 schedule; one user renamed."""
    rng = random.Random(seed + 1)
    sid = next(s for s in bound if s not in v3)
    on_call = set(control(sim, "GET", f"/accounts/{ACCOUNT}/schedules/{sid}/oncall")["user_ids"])
    user = rng.choice(sorted(matched - on_call))
    override = control(
        sim,
        "POST",
        f"/accounts/{ACCOUNT}/schedules/{sid}/overrides",
        {"user_id": user, "start": "now", "duration_seconds": 3600},
    )
    renamed = rng.choice(sorted(matched))
    control(sim, "PATCH", f"/accounts/{ACCOUNT}/users/{renamed}", {"name": "Renamed In Bench"})
    return {
        "schedule": sid,
        "override_user": user,
        "replaced_on_call": sorted(on_call),
        "replaced_matched": sorted(on_call & matched),
        "override": override,
        "renamed_user": renamed,
    }


def hour_boundary_between(a: float, b: float) -> bool:
    """Generated rotations, layers and overrides change hands on whole UTC hours only."""
    return int(a // 3600) != int(b // 3600)


def parent(args: argparse.Namespace) -> int:
    _configure_environment()
    from pagerduty_sim.generator import large_account
    from pagerduty_sim.server import start_simulator
    from workers.core.migrate import upgrade
    from workers.core.settings import get_settings, reset_settings_cache

    say(
        f"large account: {args.users:,} users, {args.schedules:,} schedules, {args.bound} bound "
        f"rotations, members for {args.member_share:.0%} of users; simulator latency "
        f"{args.latency_ms} ms, limit {SIM_LIMIT}/min; {os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    scenario = large_account(args.users, args.schedules, seed=args.seed)
    acct = scenario.accounts[ACCOUNT]
    v3 = {sid for sid, s in acct.schedules.items() if s.version == 3}
    n_users, n_v3 = len(acct.users), len(v3)
    n_v2 = len(acct.schedules) - n_v3
    log_dir = Path(os.environ["RRPD_VAR_DIR"])
    admin(f'CREATE DATABASE "{DB_NAME}"')
    phases: list[dict[str, Any]] = []
    change: dict[str, Any] | None = None
    try:
        upgrade(get_settings().effective_database_url)
        with start_simulator(
            scenario,
            in_thread=False,
            latency_ms=args.latency_ms,
            rate_limit_per_minute=SIM_LIMIT,
            log_level="error",
            startup_timeout=120.0,
        ) as sim:
            os.environ["RRPD_PAGERDUTY_API_URL"] = sim.base_url
            os.environ["RRPD_PAGERDUTY_EU_API_URL"] = sim.eu_base_url
            reset_settings_cache()
            cid, bound, matched = arrange(scenario, args.member_share, args.bound, args.seed)
            in_policy = {
                t.id
                for pol in acct.escalation_policies.values()
                for rule in pol.rules
                for t in rule
                if t.type == "schedule"
            }
            bound_v2 = [sid for sid in bound if sid not in v3]
            b2_policy = sum(1 for sid in bound_v2 if sid in in_policy)
            bound_requests = lower_bound(n_users, n_v2, n_v3, b2_policy, len(bound_v2) - b2_policy)
            del scenario, acct  # the parent's memory is not what is measured, but keep it small
            say(
                f"set-up (database, simulator subprocess, rows): "
                f"{time.perf_counter() - started:.1f} s; {len(matched):,} members, "
                f"{len(bound)} bound rotations ({len(set(bound) & v3)} on v3 schedules)"
            )
            t1 = time.time()
            phases.append(run_phase("first sync", "initial", cid, sim, args.tracemalloc, log_dir))
            say(f"  first sync: {phases[-1]['wall_s']:.2f} s")
            phases.append(
                run_phase("nothing changed", "scheduled", cid, sim, args.tracemalloc, log_dir)
            )
            say(f"  nothing changed: {phases[-1]['wall_s']:.2f} s")
            quiet_straddles_hour = hour_boundary_between(t1, time.time())
            if not args.no_change:
                change = small_change(sim, bound, v3, matched, args.seed)
                phases.append(
                    run_phase("override + rename", "scheduled", cid, sim, args.tracemalloc, log_dir)
                )
                say(f"  override + rename: {phases[-1]['wall_s']:.2f} s")
    finally:
        from workers.core.db import get_engine

        get_engine().dispose()
        admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        _clean_redis()

    out = {
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "git_commit": _git_head(),
        },
        "account": {
            "users": n_users,
            "v2_schedules": n_v2,
            "v3_schedules": n_v3,
            "members": len(matched),
            "bound_rotations": len(bound),
            "bound_on_v3": len(set(bound) & v3),
        },
        "latency_ms": args.latency_ms,
        "simulator_limit_per_minute": SIM_LIMIT,
        "our_limiter_per_minute": get_settings().pagerduty_rate_limit_per_minute,
        "lower_bound_requests": bound_requests,
        "latency_floor_s": bound_requests * args.latency_ms / 1000,
        "limiter_floor_s": _limiter_floor(bound_requests),
        "sync_driver": "fresh child process per sync calling workers.sync.run.sync_connection",
        "quiet_round_straddled_an_hour": quiet_straddles_hour,
        "change": change,
        "phases": phases,
        "total_s": round(time.perf_counter() - started, 1),
    }
    report(out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    say(f"figures written to {shown}; total {out['total_s']:.0f} s")
    return 0


def _limiter_floor(requests: int) -> float:
    """Fastest our limiter admits ``requests`` from a full bucket (burst, then R/60 a second)."""
    from workers.core.settings import get_settings

    per_s = get_settings().pagerduty_rate_limit_per_minute / 60
    return max(0, requests - LIMITER_BURST) / per_s


def _clean_redis() -> None:
    import redis

    prefix = os.environ["RRPD_REDIS_KEY_PREFIX"]
    for url in (f"{REDIS_URL}/0", f"{REDIS_URL}/1"):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _git_head() -> str | None:
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


def report(out: dict[str, Any]) -> None:
    a = out["account"]
    say()
    say(
        f"Large-account sync: {a['users']:,} users, {a['v2_schedules']:,} v2 + "
        f"{a['v3_schedules']:,} v3 schedules, {a['members']:,} members, {a['bound_rotations']} "
        f"bound rotations ({a['bound_on_v3']} on v3); simulator latency {out['latency_ms']} ms, "
        f"limit {out['simulator_limit_per_minute']}/min; our limiter "
        f"{out['our_limiter_per_minute']}/min; {out['environment']['cpus']} CPUs, load "
        f"{out['environment']['load_average'][0]:.1f}"
    )
    say(
        f"Lower bound: {out['lower_bound_requests']} requests; latency floor "
        f"{out['latency_floor_s']:.2f} s; our limiter's floor {out['limiter_floor_s']:.2f} s "
        f"(burst {LIMITER_BURST}, then {out['our_limiter_per_minute'] / 60:.0f}/s)"
    )
    header = (
        f"{'sync':<18} {'status':<9} {'requests':>8} {'bound':>5} {'429s':>4} {'wall s':>7} "
        f"{'fetch s':>7} {'apply s':>7} {'stmts':>5} {'rows (pg)':>9} {'besides runs':>12} "
        f"{'peak RSS':>9} {'RSS+':>6}"
    )
    say(header)
    say("-" * len(header))
    for p in out["phases"]:
        say(
            f"{p['label']:<18} {p['result']['status']:<9} {p['result']['requests']:>8} "
            f"{out['lower_bound_requests']:>5} {p['simulator']['status_429']:>4} "
            f"{p['wall_s']:>7.2f} {p['fetch_s']:>7.2f} {p['apply_txn_s']:>7.2f} "
            f"{p['statements_total']:>5} {sum(p['rows_written'].values()):>9,} "
            f"{p['rows_written_besides_sync_runs']:>12,} {p['peak_rss_mib']:>6.0f} MiB "
            f"{p['peak_rss_mib'] - p['rss_before_mib']:>6.0f}"
        )
    say(
        "  requests = sent by our client (retries included; the simulator saw the same count "
        "unless noted); apply s = the apply transaction (row lock, diff, writes, SyncRun, commit); "
        "RSS+ = peak RSS minus RSS before the sync (process warmed: imports, DB, Redis, HTTP)."
    )
    say()
    for p in out["phases"]:
        sr = p["sync_run"]
        seen = p["simulator"]["requests"]
        say(
            f"{p['label']}: SyncRun {sr['status']} created {sr['created']:,} updated "
            f"{sr['updated']:,} deleted {sr['deleted']:,}, {sr['duration_ms']} ms; simulator saw "
            f"{seen} requests, statuses {p['simulator']['by_status']}, 429s counted by our "
            f"client {p['client_429s']}; apply_snapshot "
            f"{p['apply_snapshot_s']:.2f} s of the {p['apply_txn_s']:.2f} s transaction; "
            f"unmatched on call {p['result'].get('unmatched_on_call', 0)}"
            + (
                f"; tracemalloc peak {p['tracemalloc_peak_mib']:.0f} MiB"
                if p["tracemalloc_peak_mib"] is not None
                else ""
            )
        )
        say(f"    rows written (pg_stat_user_tables): {p['rows_written'] or '{}'}")
        say(f"    statements: {p['statements']}")
        say(f"    requests by endpoint: {p['requests_by_endpoint']}")
    if out["change"] is not None:
        c = out["change"]
        say(
            f"Change before the third sync: override on {c['schedule']} puts {c['override_user']} "
            f"on call (replacing {c['replaced_on_call']}, matched: {c['replaced_matched']}); "
            f"user {c['renamed_user']} renamed."
        )
    if out["quiet_round_straddled_an_hour"]:
        say(
            "NOTE: the first and second syncs straddled a whole UTC hour, when generated "
            "rotations change hands: the quiet round may legitimately have written rows."
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 users / 200 schedules / 60 bound")
    p.add_argument("--users", type=int, help="default 10,000 (quick 2,000)")
    p.add_argument("--schedules", type=int, help="default 1,000 (quick 200)")
    p.add_argument("--bound", type=int, help="bound rotations, default 300 (quick 60)")
    p.add_argument("--member-share", type=float, default=0.8)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-change", action="store_true", help="skip the third (changed) sync")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also trace Python allocations in each sync (slows it: wall times are then inflated)",
    )
    p.add_argument("--output", type=Path, default=RESULTS)
    # internal: the per-sync child process
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="scheduled", help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = {
        "users": 2_000 if args.quick else 10_000,
        "schedules": 200 if args.quick else 1_000,
        "bound": 60 if args.quick else 300,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child, args.kind, args.child_out, args.tracemalloc)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())

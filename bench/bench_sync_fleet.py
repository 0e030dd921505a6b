"""Benchmark: a fleet round of syncs by real workers, then the same round with nothing changed.

Set-up: N workspaces (default 2,000), each with 50 members, a connected API-key connection to
its own simulated PagerDuty account (50 users, 10 schedules, ~5 % of them v3) and 3 rotations
bound to 3 of those schedules. The simulator runs as a subprocess with 50 ms added latency per
request; PostgreSQL holds a fresh database created for the run (dropped at the end); Redis is
the broker, with a key prefix of its own.

Rounds, each started by the real fan-out (``workers.sync.fanout.schedule_syncs``, jitter 0 so
the whole fleet is published at once: this measures capacity, not the production spread):

1. first sync of every connection (everything is an insert), by ``rrpd worker --queues sync``
   with ``--pool prefork --concurrency 16`` (see "why 16" below);
2. the same round again with nothing changed in PagerDuty: rows written besides ``sync_runs``
   (counted by PostgreSQL itself, ``pg_stat_user_tables``; goal 0);
3. baseline: the same quiet round on a subset (default 100 connections) by a worker with
   ``--concurrency 1``: what the chosen concurrency buys on the every-minute round.

Figures: syncs/second, p50/p99 sync duration (``SyncRun.duration_ms``), worker CPU seconds per
sync (utime+stime of the worker's process tree from /proc), peak worker memory (sum of PSS of
the tree, sampled every 0.25 s), simulator CPU, and rows written per table.

Why prefork 16: a sync is ~4 sequential PagerDuty requests (50 ms each here, more in real life)
plus ~15 SQL statements, so each one mostly waits. 16 processes keep both cores busy through
those waits; processes (not threads) because the CPU part (JSON, SQLAlchemy) would otherwise
share one GIL. Try ``--pool threads --concurrency 32`` to compare.

    .venv/bin/python bench/bench_sync_fleet.py --workspaces 200     # quick check, ~1 minute
    .venv/bin/python bench/bench_sync_fleet.py                      # 2,000 workspaces
    .venv/bin/python bench/bench_sync_fleet.py --configs prefork:16,threads:32 --compare main

``--compare REF`` runs every quiet round twice, back to back on the same fleet: first by a
worker running REF's code (``git archive REF`` into a temporary directory, first on the
worker's ``PYTHONPATH``), then by one running this tree's; the in-process statement and Redis
counts are taken for both too. The first sync is always this tree's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The code under test: this tree, or (``--compare``'s in-process counts) another ref's export.
CODE = Path(os.environ.get("RRPD_BENCH_CODE") or ROOT)
if str(CODE) not in sys.path:
    sys.path.insert(0, str(CODE))

RUN = uuid.uuid4().hex[:8]
PG_ADMIN_URL = os.environ.get(
    "RRPD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RRPD_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DB_NAME = f"rrpd_bench_{RUN}"
USERS, SCHEDULES, BOUND = 50, 10, 3
LATENCY_MS = 50


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _configure_environment() -> dict[str, str]:
    """Before any project import: settings and Celery's config are read at import time."""
    from cryptography.fernet import Fernet

    base, _, _ = PG_ADMIN_URL.rpartition("/")
    env = {
        "RRPD_ENV": "test",
        "RRPD_DATABASE_URL": f"{base}/{DB_NAME}",
        "RRPD_BROKER_URL": f"{REDIS_URL}/0",
        "RRPD_RESULT_BACKEND": f"{REDIS_URL}/1",
        "RRPD_REDIS_KEY_PREFIX": f"rrpd-bench-{RUN}",
        "RRPD_ENCRYPTION_KEYS": f"bench={Fernet.generate_key().decode()}",
        "RRPD_API_JWT_SECRET": uuid.uuid4().hex * 2,
        "RRPD_VAR_DIR": str(Path(tempfile.gettempdir()) / f"rrpd-bench-{RUN}"),
        "RRPD_LOG_FORMAT": "json",
        # The whole fleet at once: capacity, not the production spread.
        "RRPD_SYNC_JITTER_SECONDS": "0",
        # Every quiet round is the on-call check, however long the run takes (the directory
        # read is the first sync's).
        "RRPD_DIRECTORY_INTERVAL_SECONDS": "86400",
    }
    os.environ.update(env)
    Path(env["RRPD_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    return env


# --- /proc sampling -----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _tree(root_pid: int) -> list[int]:
    """The process and its descendants (a prefork worker: main process + pool children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root_pid: int) -> float:
    total = 0
    for pid in _tree(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def pss_mib(root_pid: int) -> float:
    total_kib = 0
    for pid in _tree(root_pid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kib / 1024


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._halt = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, pss_mib(self.pid))
            self._halt.wait(0.25)

    def stop(self) -> float:
        self._halt.set()
        self.join(2)
        return self.peak


# --- database -----------------------------------------------------------------------------------


def admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def arrange_fleet(n: int) -> list[uuid.UUID]:
    """Workspaces, members, connected connections and bound rotations, inserted in bulk."""
    from sqlalchemy import insert

    from models import Member, PagerDutyConnection, Rotation, Workspace, utcnow
    from pagerduty_sim.generator import fleet_key
    from workers.core.db import transaction

    now = utcnow()
    workspaces, members, connections, rotations = [], [], [], []
    for i in range(n):
        ws = uuid.uuid4()
        workspaces.append({"id": ws, "name": f"Fleet {i}"})
        for j in range(USERS):
            email = f"user{j:05d}@fleet{i}.example"
            members.append(
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws,
                    "email": email,
                    "email_key": email,
                    "display_name": f"User {j}",
                    "role": "member",
                }
            )
        connections.append(
            {
                "id": uuid.uuid4(),
                "workspace_id": ws,
                "auth_method": "api_key",
                "region": "us",
                "status": "connected",
                "generation": 1,
                "api_key": fleet_key(i),
                "key_level": "account",
                "connected_at": now,
                "status_changed_at": now,
                "consecutive_sync_failures": 0,
            }
        )
        for k in range(BOUND):
            rotations.append(
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws,
                    "name": f"Rotation {k}",
                    "mode": "pagerduty",
                    "pagerduty_schedule_id": f"F{i:05d}S{k:04d}",
                    "bound_at": now,
                }
            )
    with transaction() as s:
        s.execute(insert(Workspace), workspaces)
        for start in range(0, len(members), 10_000):
            s.execute(insert(Member), members[start : start + 10_000])
        s.execute(insert(PagerDutyConnection), connections)
        s.execute(insert(Rotation), rotations)
    return [c["id"] for c in connections]


# PostgreSQL (15+) backends flush their table statistics at most once a second while busy and
# within 10 s once idle: wait that long before trusting a reading.
STATS_SETTLE_S = 11.0
# Quiet checks counted in-process per code: one batch of the default size.
SAMPLE = 50


def table_writes(column: str = "written") -> dict[str, int]:
    """Rows inserted + updated + deleted per table (``column="inserted"``: inserted only), as
    PostgreSQL counted them (call after ``STATS_SETTLE_S`` of quiet, or pending counts of idle
    backends are missing)."""
    from sqlalchemy import text

    from workers.core.db import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = conn.execute(
            text(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                "WHERE schemaname = 'public'"
            )
        ).all()
    if column == "inserted":
        return {name: int(ins) for name, ins, _, _ in rows}
    return {name: int(ins + upd + dele) for name, ins, upd, dele in rows}


def make_due(ids: list[uuid.UUID] | None) -> None:
    """All (or only ``ids``) due now; the others not due for an hour."""
    from datetime import timedelta

    from sqlalchemy import update

    from models import PagerDutyConnection, utcnow
    from workers.core.db import transaction

    with transaction() as s:
        if ids is None:
            s.execute(update(PagerDutyConnection).values(next_sync_at=None))
        else:
            s.execute(
                update(PagerDutyConnection).values(next_sync_at=utcnow() + timedelta(hours=1))
            )
            s.execute(
                update(PagerDutyConnection)
                .where(PagerDutyConnection.id.in_(ids))
                .values(next_sync_at=None)
            )


# --- workers ------------------------------------------------------------------------------------


def code_env(code: Path | None) -> dict[str, str]:
    """The environment of a process that runs ``code`` (another ref's export) or this tree."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
        env["RRPD_BENCH_CODE"] = str(code)
    return env


def start_worker(
    pool: str, concurrency: int, log_dir: Path, code: Path | None = None
) -> subprocess.Popen[bytes]:
    from workers.tasking.app import app

    log = (log_dir / f"bench-worker-{pool}-{concurrency}-{int(time.time())}.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rrpd", "worker", "--queues", "sync,schedule"),
            *("--pool", pool, "--concurrency", str(concurrency)),
        ],
        env=code_env(code),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=code or ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited; see {log.name}")
        try:
            ping = app.send_task("rrpd.ping", kwargs={"payload": "ready"}, queue="sync")
            if ping.get(timeout=5) == {"reply": "ready"}:
                return proc
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"worker did not start; see {log.name}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- a round ------------------------------------------------------------------------------------


def fan_out(singles: bool) -> dict[str, int]:
    """The round's fan-out: this tree's (batches of ``check_connections``), or, for a worker
    running code from before batches (``singles``), the same claim published as one
    ``sync_connection`` per connection, as that code's fan-out did."""
    from models import utcnow
    from workers.sync import fanout

    if not singles:
        return fanout.schedule_syncs()
    from workers.tasking.contract import SYNC_CONNECTION
    from workers.tasking.enqueue import publish_many

    ids = fanout.claim(utcnow())
    kind = "scheduled"
    publish_many(SYNC_CONNECTION, [({"connection_id": str(c), "kind": kind}, None) for c in ids])
    return {"enqueued": len(ids), "shards": 0}


def finished_since(started_at: Any) -> tuple[list[Any], int]:
    """The recorded runs started since ``started_at`` as (status, duration_ms, finished_at,
    rows, requests), plus the quiet checks (no run; the connection row's last check)."""
    from datetime import timedelta

    from sqlalchemy import select

    from models import PagerDutyConnection, SyncRun
    from workers.core.db import transaction

    c = PagerDutyConnection
    with transaction() as s:
        runs = [
            (r.status, r.duration_ms, r.finished_at, r.rows, r.requests_made)
            for r in s.execute(
                select(
                    SyncRun.status,
                    SyncRun.duration_ms,
                    SyncRun.finished_at,
                    (SyncRun.rows_created + SyncRun.rows_updated + SyncRun.rows_deleted).label(
                        "rows"
                    ),
                    SyncRun.requests_made,
                ).where(SyncRun.started_at >= started_at)
            )
        ]
        quiet = [
            ("quiet", ms, at + timedelta(milliseconds=ms or 0), 0, n or 0)
            for at, ms, n in s.execute(
                select(c.last_checked_at, c.last_check_ms, c.last_check_requests).where(
                    c.last_checked_at >= started_at
                )
            )
        ]
    return runs + quiet, len(quiet)


def run_round(
    label: str,
    expected: int,
    worker: subprocess.Popen[bytes],
    sim_pid: int,
    timeout: float,
    singles: bool = False,
) -> dict[str, Any]:
    from models import utcnow

    time.sleep(STATS_SETTLE_S)  # let the set-up's own writes reach the statistics first
    writes_before = table_writes()
    inserts_before = table_writes("inserted")
    cpu_before, sim_cpu_before = cpu_seconds(worker.pid), cpu_seconds(sim_pid)
    sampler = MemorySampler(worker.pid)
    sampler.start()
    started_at = utcnow()
    t0 = time.monotonic()
    fanned_out = fan_out(singles)
    fanout_s = time.monotonic() - t0
    # Up to 2,000 due: the round claims them itself; more: its shards do, on the worker.
    assert fanned_out["shards"] or fanned_out["enqueued"] == expected, fanned_out
    done = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(finished_since(started_at)[0])
        if done >= expected:
            break
        time.sleep(0.25)
    wall = time.monotonic() - t0
    peak = sampler.stop()
    cpu = cpu_seconds(worker.pid) - cpu_before
    sim_cpu = cpu_seconds(sim_pid) - sim_cpu_before
    if done < expected:
        raise RuntimeError(f"{label}: only {done}/{expected} syncs finished in {timeout:.0f} s")
    runs, _quiet = finished_since(started_at)
    time.sleep(STATS_SETTLE_S)
    writes_after = table_writes()
    inserts_after = table_writes("inserted")
    writes = {
        t: writes_after.get(t, 0) - writes_before.get(t, 0)
        for t in writes_after
        if writes_after.get(t, 0) - writes_before.get(t, 0)
    }
    inserts = {
        t: inserts_after.get(t, 0) - inserts_before.get(t, 0)
        for t in inserts_after
        if inserts_after.get(t, 0) - inserts_before.get(t, 0)
    }
    durations = sorted(r[1] or 0 for r in runs)
    last = max(r[2] for r in runs)
    span = (last - started_at).total_seconds()
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r[0]] = statuses.get(r[0], 0) + 1
    return {
        "label": label,
        "syncs": len(runs),
        "statuses": statuses,
        "wall_s": span,
        "syncs_per_s": len(runs) / span,
        "p50_ms": statistics.median(durations),
        "p99_ms": durations[min(len(durations) - 1, int(len(durations) * 0.99))],
        "cpu_per_sync_ms": 1000 * cpu / len(runs),
        "sim_cpu_per_sync_ms": 1000 * sim_cpu / len(runs),
        "peak_pss_mib": peak,
        "fanout_s": fanout_s,
        "requests": sum(r[4] for r in runs),
        "rows_by_syncrun": sum(r[3] for r in runs),
        "writes": writes,
        "inserts": inserts,
        "poll_wall_s": wall,
    }


def parse_config(text: str) -> tuple[str, int, bool]:
    """``pool:concurrency[:old]``; ``old`` = today's path: scheduled syncs store a result and a
    STARTED state (the fan-out's messages without ``ignore_result``)."""
    parts = text.split(":")
    return parts[0], int(parts[1]), len(parts) > 2 and parts[2] == "old"


@contextlib.contextmanager
def old_results(enabled: bool) -> Iterator[None]:
    """Publish the fan-out's messages as before this change (results and STARTED stored)."""
    from workers.outbox import publisher

    if not enabled:
        yield
        return
    original = publisher.send_many

    def send_many(messages: Any, **_: Any) -> int:
        return original(messages, ignore_result=False)

    publisher.send_many = send_many  # type: ignore[assignment]
    try:
        yield
    finally:
        publisher.send_many = original  # type: ignore[assignment]


def statements_per_quiet_sync(ids: list[uuid.UUID]) -> tuple[float, float]:
    """SQL statements and Redis commands per quiet sync, run in this process (counted with
    SQLAlchemy's ``before_cursor_execute`` and a wrapper of redis-py's ``execute_command``;
    a pipeline counts once: one round trip)."""
    import redis
    from sqlalchemy import event

    from workers.core.db import get_engine
    from workers.sync import run

    statements = 0
    commands = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    original_cmd = redis.Redis.execute_command
    original_pipe = redis.client.Pipeline.execute

    def cmd(self: Any, *a: Any, **kw: Any) -> Any:
        nonlocal commands
        commands += 1
        return original_cmd(self, *a, **kw)

    def pipe(self: Any, *a: Any, **kw: Any) -> Any:
        nonlocal commands
        commands += 1
        return original_pipe(self, *a, **kw)

    try:  # this tree: the batch the fan-out sends; code from before batches: one sync each
        from workers.sync.batch import check_connections

        def check(batch: list[uuid.UUID]) -> None:
            # How the in-process batch ended (quiet, applied, single...): what its counts cover.
            say(f"in-process batch of {len(batch)}: {check_connections(batch).as_dict()}")

    except ImportError:

        def check(batch: list[uuid.UUID]) -> None:
            for cid in batch:
                run.sync_connection(cid, kind="scheduled")

    engine = get_engine()
    check(ids[:3])  # warm: connections, caches
    event.listen(engine, "before_cursor_execute", count)
    redis.Redis.execute_command = cmd  # type: ignore[method-assign]
    redis.client.Pipeline.execute = pipe  # type: ignore[method-assign]
    try:
        sample = ids[3 : SAMPLE + 3]
        check(sample)
    finally:
        event.remove(engine, "before_cursor_execute", count)
        redis.Redis.execute_command = original_cmd  # type: ignore[method-assign]
        redis.client.Pipeline.execute = original_pipe  # type: ignore[method-assign]
    return statements / len(sample), commands / len(sample)


def export_ref(ref: str) -> Path:
    """``ref``'s tree (``git archive``) in a temporary directory, for ``--compare``."""
    target = Path(tempfile.mkdtemp(prefix=f"rrpd-bench-{RUN}-code-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def per_sync_with(code: Path | None, ids: list[uuid.UUID]) -> tuple[float, float]:
    """``statements_per_quiet_sync`` run by ``code`` (in a child process) or by this tree."""
    if code is None:
        return statements_per_quiet_sync(ids)
    ids_file = code / "bench-ids.txt"
    ids_file.write_text("\n".join(str(i) for i in ids[: SAMPLE + 3]))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--per-sync-child", str(ids_file)],
        env=code_env(code),
        cwd=code,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    statements, commands = out.strip().splitlines()[-1].split()
    return float(statements), float(commands)


def _per_sync_child(ids_file: str) -> int:
    """``--per-sync-child``: the counts for the code on ``sys.path`` (the parent's environment:
    database, Redis prefix and simulator are the parent's)."""
    ids = [uuid.UUID(line) for line in Path(ids_file).read_text().split()]
    statements, commands = statements_per_quiet_sync(ids)
    print(f"{statements} {commands}")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--per-sync-child":
        return _per_sync_child(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=2000)
    parser.add_argument(
        "--configs",
        default="prefork:16:old,prefork:16,threads:32",
        help="quiet rounds to compare, pool:concurrency[:old]; the first also runs the first sync",
    )
    parser.add_argument("--baseline", type=int, default=100, help="connections in the baseline")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="run each quiet round with REF's code first, then this tree's (e.g. main)",
    )
    args = parser.parse_args()
    n = args.workspaces
    configs = [parse_config(c) for c in args.configs.split(",") if c]

    _configure_environment()
    from pagerduty_sim.generator import fleet
    from pagerduty_sim.server import start_simulator
    from workers.core.migrate import upgrade
    from workers.core.settings import get_settings

    admin(f'CREATE DATABASE "{DB_NAME}"')
    log_dir = Path(os.environ["RRPD_VAR_DIR"])  # worker logs, outside the repository
    results: list[dict[str, Any]] = []
    per_sync: dict[str, tuple[float, float]] = {}
    old_code = export_ref(args.compare) if args.compare else None
    # (label suffix, code) of each quiet round of a config: REF's first, then this tree's.
    codes: list[tuple[str, Path | None]] = [("", None)]
    if old_code is not None:
        codes = [(f" [{args.compare}]", old_code), (" [this tree]", None)]
    loads = [os.getloadavg()]
    try:
        upgrade(get_settings().effective_database_url)
        say(f"fleet: {n} workspaces x {USERS} users, {SCHEDULES} schedules, {BOUND} bound")
        t = time.monotonic()
        scenario = fleet(n, USERS, SCHEDULES)
        say(f"scenario generated: {n} accounts in {time.monotonic() - t:.2f} s")
        with start_simulator(
            scenario, in_thread=False, latency_ms=LATENCY_MS, log_level="error"
        ) as sim:
            os.environ["RRPD_PAGERDUTY_API_URL"] = sim.base_url
            os.environ["RRPD_PAGERDUTY_EU_API_URL"] = sim.eu_base_url
            from workers.core.settings import reset_settings_cache

            reset_settings_cache()
            ids = arrange_fleet(n)
            say(f"set-up (simulator + database rows): {time.monotonic() - t:.1f} s")
            assert sim.process is not None

            for number, (pool, concurrency, old) in enumerate(configs):
                if number == 0:
                    worker = start_worker(pool, concurrency, log_dir)
                    try:
                        make_due(None)
                        label = f"first sync, {pool} {concurrency}"
                        results.append(run_round(label, n, worker, sim.process.pid, args.timeout))
                        say(f"first sync done: {results[-1]['syncs_per_s']:.1f} syncs/s")
                    finally:
                        stop_worker(worker)
                for suffix, code in codes:
                    name = f"{pool} {concurrency}{' old' if old else ''}{suffix}"
                    worker = start_worker(pool, concurrency, log_dir, code)
                    try:
                        with old_results(old):
                            make_due(None)
                            results.append(
                                run_round(
                                    f"nothing changed, {name}",
                                    n,
                                    worker,
                                    sim.process.pid,
                                    args.timeout,
                                    singles=code is not None
                                    and not (code / "workers/sync/batch.py").exists(),
                                )
                            )
                            results[-1]["config"] = (pool, concurrency, old)
                            results[-1]["code"] = suffix
                        say(f"quiet round {name} done: {results[-1]['syncs_per_s']:.1f} syncs/s")
                    finally:
                        stop_worker(worker)
                    loads.append(os.getloadavg())
            make_due([])
            for suffix, code in codes:
                per_sync[suffix] = per_sync_with(code, ids)
    finally:
        from workers.core.db import dispose_engines

        dispose_engines()
        admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        _clean_redis()
        if old_code is not None:
            shutil.rmtree(old_code, ignore_errors=True)

    report(results, n, per_sync, loads)
    return 0


def _clean_redis() -> None:
    import redis

    prefix = os.environ["RRPD_REDIS_KEY_PREFIX"]
    for url in (f"{REDIS_URL}/0", f"{REDIS_URL}/1"):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def report(
    results: list[dict[str, Any]],
    n: int,
    per_sync: dict[str, tuple[float, float]],
    loads: list[tuple[float, float, float]],
) -> None:
    say()
    say(
        f"Fleet sync benchmark: {n} workspaces, simulator latency {LATENCY_MS} ms, "
        f"{os.cpu_count()} CPUs (a quiet round is the on-call check, read_check; the first "
        "sync reads the directory)"
    )
    say(
        "Load average (1 min) at the start and after each quiet round: "
        + ", ".join(f"{one:.2f}" for one, _, _ in loads)
    )
    header = (
        f"{'round':<44} {'syncs':>6} {'syncs/s':>8} {'conn/min':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms/sync':>11} {'sim CPU ms':>10} {'peak MiB':>9} {'req/sync':>8}"
    )
    say(header)
    say("-" * len(header))
    for r in results:
        say(
            f"{r['label']:<44} {r['syncs']:>6} {r['syncs_per_s']:>8.1f} "
            f"{r['syncs_per_s'] * 60:>8.0f} {r['p50_ms']:>7.0f} "
            f"{r['p99_ms']:>7.0f} {r['cpu_per_sync_ms']:>11.1f} {r['sim_cpu_per_sync_ms']:>10.1f} "
            f"{r['peak_pss_mib']:>9.0f} {r['requests'] / r['syncs']:>8.2f}"
        )
    say()
    for r in results:
        other = {t: c for t, c in r["writes"].items() if t not in ("sync_runs",)}
        fanout = other.pop("pagerduty_connections", 0)
        inserted = sum(r["inserts"].values())
        say(
            f"{r['label']}: statuses {r['statuses']}; fan-out {r['fanout_s'] * 1000:.0f} ms; "
            f"rows written: sync_runs {r['writes'].get('sync_runs', 0)}, "
            f"pagerduty_connections {fanout}, other tables {sum(other.values())} {other or ''}; "
            f"rows inserted {inserted} ({inserted / r['syncs']:.2f} per check)"
        )
    say()
    for suffix, (statements, commands) in per_sync.items():
        say(
            f"Per quiet check{suffix} (in-process, {SAMPLE} checks): {statements:.2f} SQL "
            f"statements, {commands:.2f} Redis round trips (a pipeline counts once)."
        )
    quiet = [r for r in results if "config" in r]
    before = {r["config"]: r for r in quiet if r["code"] not in ("", " [this tree]")}
    for r in quiet:
        base = before.get(r["config"]) if r["code"] == " [this tree]" else None
        if base is None:
            base = quiet[0]
        if base is r:
            continue
        say(
            f"{r['label']} vs {base['label']}: connections/min x"
            f"{r['syncs_per_s'] / base['syncs_per_s']:.2f}, CPU ms/check x"
            f"{r['cpu_per_sync_ms'] / base['cpu_per_sync_ms']:.2f}, p50 x"
            f"{r['p50_ms'] / base['p50_ms']:.2f}, peak memory x"
            f"{r['peak_pss_mib'] / base['peak_pss_mib']:.2f}"
        )
    best = max(quiet, key=lambda r: r["syncs_per_s"])
    say(
        f"Best quiet round: {best['label']}, {best['syncs_per_s'] * 60:.0f} connections kept "
        f"fresh per minute on this node (goal 12,000)."
    )


if __name__ == "__main__":
    sys.exit(main())

"""Profile: where the worker's CPU goes in a quiet on-call check (issue 11 item 5).

The fleet benchmark's set-up on a small fleet (default 200 workspaces; ``bench_sync_fleet``'s
accounts, simulator and database), a first sync of every connection, then the quiet round
profiled two ways:

1. **In-process** (``--side inproc``), the code a task runs, without Celery, under cProfile
   with a CPU clock (waiting on PagerDuty, PostgreSQL or Redis costs nothing). Self time is
   summed by component (our modules, SQLAlchemy, psycopg, httpx, redis-py, logging, ...), and
   the inclusive time of the check's steps is listed.

   * ``--batch`` (the default): ``batch.check_connections`` over batches of
     ``BATCH_SIZE`` (50, the default ``RRPD_CHECK_BATCH_SIZE``), as the beat fan-out sends
     them and as ``bench_sync_fleet``'s in-process count runs them. A batch reads on a thread
     pool, so every thread gets a profiler of its own with that thread's CPU clock
     (``time.thread_time``; ``threading.setprofile`` starts it in each new thread) and the
     profiles are added up: stages (lease, plan, read, decide, record) and components.
   * ``--single``: ``run.sync_connection(cid, kind="scheduled")`` one connection at a time (the
     path of "sync now", a retry, or a connection a batch hands to the single pass), with
     ``time.process_time``.
2. **Celery** (``--side worker``): a real ``rrpd worker`` (``--pool``/``--concurrency``) under
   ``py-spy record`` (sampling every process of the tree, idle samples left out), fed the quiet
   round by the real fan-out. Samples are summed the same way, plus Celery's share (kombu,
   billiard, events, the result and ack path) around the task body.

    .venv/bin/python bench/profile_check.py                     # both sides, 200 workspaces
    .venv/bin/python bench/profile_check.py --side inproc --top 40
    .venv/bin/python bench/profile_check.py --side inproc --single

py-spy must be installed in the environment (``pip install py-spy``) for the worker side.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sync_fleet as fleet_bench

say = fleet_bench.say

# Component of a frame, from its file: the first prefix that matches wins.
COMPONENTS: list[tuple[str, str]] = [
    ("/workers/sync/", "ours: workers.sync"),
    ("/workers/pagerduty/", "ours: workers.pagerduty"),
    ("/workers/handoffs/", "ours: workers.handoffs"),
    ("/workers/connections/", "ours: workers.connections"),
    ("/workers/core/", "ours: workers.core"),
    ("/workers/tasking/", "ours: workers.tasking"),
    ("/workers/", "ours: other workers.*"),
    ("/models/", "ours: models"),
    ("/tasks/", "ours: tasks"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/psycopg", "psycopg"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpcore"),
    ("/h11/", "httpcore"),
    ("/redis/", "redis-py"),
    ("/structlog/", "logging (structlog)"),
    ("/logging/", "logging (stdlib)"),
    ("/pydantic", "pydantic"),
    ("/json/", "json"),
    ("/kombu/", "Celery: kombu"),
    ("/celery/", "Celery: celery"),
    ("/billiard/", "Celery: billiard"),
    ("/vine/", "Celery: vine"),
    ("/cryptography/", "cryptography (Fernet)"),
    ("/threading.py", "threading"),
    ("/concurrent/", "threading"),
    ("/socket.py", "sockets / ssl"),
    ("/ssl.py", "sockets / ssl"),
    ("/selectors.py", "sockets / ssl"),
    ("/uuid.py", "uuid"),
    ("/_strptime.py", "datetime"),
    ("/email/", "stdlib: email / urllib"),
    ("/urllib/", "stdlib: email / urllib"),
]


def component(filename: str) -> str:
    if filename.startswith(("~", "<")):
        return "builtins (C)"
    for prefix, name in COMPONENTS:
        if prefix in filename:
            return name
    return "other Python"


# Steps of the check (inclusive CPU): (label, file suffix, function name).
STEPS: list[tuple[str, str, str]] = [
    ("whole sync_connection", "workers/sync/run.py", "sync_connection"),
    ("credential_for (connection row, decrypt)", "workers/connections/tokens.py", "credential_for"),
    ("read_plan (bound ids, directory age, v3)", "workers/sync/run.py", "read_plan"),
    ("client construction (default_client)", "workers/sync/run.py", "default_client"),
    ("read_check (PagerDuty requests + parsing)", "workers/pagerduty/snapshot.py", "read_check"),
    ("  rate limiter acquire (Lua)", "workers/pagerduty/ratelimit.py", "acquire"),
    ("  httpx send (Client.get)", "httpx/_client.py", "get"),
    ("  response.json()", "httpx/_models.py", "json"),
    ("needs_directory (mirror users)", "workers/sync/run.py", "needs_directory"),
    ("RunContext.apply (txn, diff, SyncRun)", "workers/sync/records.py", "apply"),
    ("  apply_snapshot (the diff)", "workers/sync/apply.py", "apply_snapshot"),
    ("  metrics (pipelined HINCRBYFLOAT)", "workers/sync/records.py", "_metrics"),
    ("lease acquire (SET NX + thread start)", "workers/core/locks.py", "acquire"),
    ("lease release (stop thread + EVAL)", "workers/core/locks.py", "release"),
    ("rerun flags (DEL / EXISTS)", "workers/core/locks.py", "clear_flag"),
    ("", "workers/core/locks.py", "flag_set"),
    ("SQLAlchemy Session.execute (all)", "sqlalchemy/orm/session.py", "execute"),
    ("session commit", "sqlalchemy/orm/session.py", "commit"),
    ("pool checkout (incl. pre-ping)", "sqlalchemy/pool/base.py", "_checkout"),
]


# The batch's stages (inclusive CPU, summed over the threads): as STEPS. The read stage runs on
# the pool's threads, everything else on the task's thread.
BATCH_STEPS: list[tuple[str, str, str]] = [
    ("whole check_connections (task thread)", "workers/sync/batch.py", "check_connections"),
    ("lease (one pipeline for the batch)", "workers/core/locks.py", "hold_leases"),
    ("plan_batch (five statements)", "workers/sync/batch_plan.py", "plan_batch"),
    ("  connections + route (decrypt)", "workers/sync/batch_plan.py", "_route"),
    ("", "workers/sync/batch_plan.py", "_connections"),
    ("  bound rotations", "workers/sync/batch_plan.py", "_add_rotations"),
    ("  schedules' members", "workers/sync/batch_plan.py", "_add_users"),
    ("  stored on-call (mirror + handoffs)", "workers/sync/batch_plan.py", "_add_stored"),
    ("read stage (_read, pool threads)", "workers/sync/batch.py", "_read"),
    ("  client construction (default_client)", "workers/sync/run.py", "default_client"),
    ("  read_check (requests + parsing)", "workers/pagerduty/snapshot.py", "read_check"),
    ("    rate limiter acquire (Lua)", "workers/pagerduty/ratelimit.py", "acquire"),
    ("    httpx send (Client.get)", "httpx/_client.py", "get"),
    ("    response.json()", "httpx/_models.py", "json"),
    ("  read_plan (ReadPlan from the plan)", "workers/sync/batch_plan.py", "read"),
    ("named users look-up", "workers/sync/batch.py", "_look_up_named"),
    ("decide (_is_quiet)", "workers/sync/batch.py", "_is_quiet"),
    ("record quiet (one UPDATE)", "workers/sync/batch.py", "_record_quiet"),
    ("metrics (one pipeline)", "workers/sync/batch.py", "_metrics"),
    ("hand over (rerun flags)", "workers/sync/batch.py", "_hand_over"),
    ("single passes / applied (not quiet)", "workers/sync/batch.py", "_single"),
    ("", "workers/sync/batch.py", "_finish"),
    ("thread pools (start, map, join)", "concurrent/futures/thread.py", "submit"),
    ("", "concurrent/futures/thread.py", "shutdown"),
    ("SQLAlchemy Session.execute (all)", "sqlalchemy/orm/session.py", "execute"),
    ("session commit", "sqlalchemy/orm/session.py", "commit"),
    ("pool checkout (incl. pre-ping)", "sqlalchemy/pool/base.py", "_checkout"),
]

# Checks a profiled batch holds: the fan-out's default batch size.
BATCH_SIZE = 50


def by_component(stats: pstats.Stats) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        out[component(filename)] += tt
    return dict(out)


def step_times(
    stats: pstats.Stats, steps: list[tuple[str, str, str]] = STEPS
) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    raw = stats.stats  # type: ignore[attr-defined]
    for label, suffix, func in steps:
        total = sum(
            ct
            for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in raw.items()
            if filename.endswith(suffix) and name == func
        )
        if label:
            rows.append((label, total))
        else:
            rows[-1] = (rows[-1][0], rows[-1][1] + total)
    return rows


def _batches(ids: list[Any]) -> list[list[Any]]:
    return [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]


def profile_batches(ids: list[Any], top: int, save: str | None) -> None:
    """``check_connections`` over batches of ``BATCH_SIZE``, every thread profiled."""
    from workers.sync.batch import check_connections

    check_connections(ids[:5])  # warm: connections, caches, scripts, the thread pools
    sample = ids[5:]
    # Unprofiled first: cProfile's own cost inflates every figure it gives (about x2-3).
    cpu0 = time.process_time()
    for batch in _batches(sample):
        check_connections(batch)
    plain_ms = 1000 * (time.process_time() - cpu0) / len(sample)
    say(f"In-process batches without the profiler: {plain_ms:.2f} ms CPU per check")

    profilers: list[cProfile.Profile] = []

    def start_in_thread(*_: Any) -> None:
        # The first event of a new thread: replace this hook with the thread's own profiler.
        sys.setprofile(None)
        profiler = cProfile.Profile(time.thread_time)
        profilers.append(profiler)
        profiler.enable()

    main = cProfile.Profile(time.thread_time)
    outcomes: dict[str, int] = defaultdict(int)
    cpu0, wall0 = time.process_time(), time.monotonic()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        for batch in _batches(sample):
            for key, value in check_connections(batch).as_dict().items():
                outcomes[key] += value
    finally:
        main.disable()
        threading.setprofile(None)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    n = len(sample)
    # The pools are shut down with each batch: every thread profiled has ended.
    stats = pstats.Stats(main)
    for profiler in profilers:
        stats.add(profiler)
    if save:
        stats.dump_stats(save)
    profiled_ms = 1000 * stats.total_tt / n  # type: ignore[attr-defined]
    scale = plain_ms / profiled_ms if profiled_ms else 0.0
    say()
    say(
        f"In-process batches of {BATCH_SIZE}: {n} checks in {len(_batches(sample))} batches "
        f"({dict(outcomes)}), {len(profilers)} pool threads profiled; CPU {1000 * cpu / n:.2f} "
        f"ms/check under cProfile (profiled total {profiled_ms:.2f} ms), wall "
        f"{1000 * wall / n:.1f} ms/check"
    )
    say(f"(est. = profiled ms scaled to the unprofiled {plain_ms:.2f} ms: x{scale:.2f})")
    say(f"{'component (self time)':<36} {'ms/check':>9} {'est.':>6} {'share':>6}")
    comps = by_component(stats)
    total = sum(comps.values()) or 1.0
    for name, tt in sorted(comps.items(), key=lambda kv: -kv[1]):
        ms = 1000 * tt / n
        say(f"{name:<36} {ms:>9.2f} {ms * scale:>6.2f} {100 * tt / total:>5.1f}%")
    say()
    say(f"{'stage (inclusive)':<44} {'ms/check':>9} {'est.':>6}")
    for label, ct in step_times(stats, BATCH_STEPS):
        ms = 1000 * ct / n
        say(f"{label:<44} {ms:>9.2f} {ms * scale:>6.2f}")
    if top:
        say()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


def profile_inproc(ids: list[Any], top: int, save: str | None) -> None:
    from workers.sync import run

    for cid in ids[:5]:
        run.sync_connection(cid, kind="scheduled")  # warm: connections, caches, scripts
    sample = ids[5:]
    # Unprofiled first: cProfile's own cost inflates every figure it gives (about x2-3).
    cpu0 = time.process_time()
    for cid in sample:
        run.sync_connection(cid, kind="scheduled")
    plain_ms = 1000 * (time.process_time() - cpu0) / len(sample)
    say(f"In-process quiet checks without the profiler: {plain_ms:.2f} ms CPU per check")
    profiler = cProfile.Profile(time.process_time)
    cpu0, wall0 = time.process_time(), time.monotonic()
    profiler.enable()
    reads: dict[str, int] = defaultdict(int)
    for cid in sample:
        reads[str(run.sync_connection(cid, kind="scheduled").read)] += 1
    profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    n = len(sample)
    stats = pstats.Stats(profiler)
    if save:
        stats.dump_stats(save)
    say()
    say(
        f"In-process quiet checks: {n} syncs ({dict(reads)}), CPU {1000 * cpu / n:.2f} ms/check "
        f"(under cProfile; profiled total {1000 * stats.total_tt / n:.2f} ms), "  # type: ignore[attr-defined]
        f"wall {1000 * wall / n:.0f} ms/check"
    )
    say(f"{'component (self time)':<36} {'ms/check':>9} {'share':>6}")
    comps = by_component(stats)
    total = sum(comps.values()) or 1.0
    for name, tt in sorted(comps.items(), key=lambda kv: -kv[1]):
        say(f"{name:<36} {1000 * tt / n:>9.2f} {100 * tt / total:>5.1f}%")
    say()
    say(f"{'step (inclusive)':<44} {'ms/check':>9}")
    for label, ct in step_times(stats):
        say(f"{label:<44} {1000 * ct / n:>9.2f}")
    if top:
        say()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


# --- the worker side: py-spy over a real worker ---------------------------------------------------


def _frame_component(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    start = frame.rfind("(")
    path = frame[start + 1 :] if start >= 0 else frame
    if path.startswith("<frozen"):
        return "stdlib (frozen)"
    return component(path if path.startswith("/") else "/" + path)


# Inclusive markers for the worker side: a stack that contains the frame counts.
WORKER_MARKERS: list[tuple[str, str]] = [
    ("task body: batch.check_connections", "check_connections (workers/sync/batch.py"),
    ("  plan_batch", "plan_batch (workers/sync/batch_plan.py"),
    ("  _read (the read stage)", "_read (workers/sync/batch.py"),
    ("  _record_quiet", "_record_quiet (workers/sync/batch.py"),
    ("task body: run.sync_connection", "sync_connection (workers/sync/run.py"),
    ("  credential_for", "credential_for (workers/connections/tokens.py"),
    ("  read_plan", "read_plan (workers/sync/run.py"),
    ("  read_check", "read_check (workers/pagerduty/snapshot.py"),
    ("  needs_directory", "needs_directory (workers/sync/run.py"),
    ("  RunContext.apply", "apply (workers/sync/records.py"),
    (
        "RRPDTask.__call__ (contract check, log context, deliveries)",
        "__call__ (workers/tasking/app.py",
    ),
    ("  _check_deliveries (INCR + EXPIRE)", "_check_deliveries (workers/tasking/app.py"),
    ("Celery trace (task run incl. body)", "trace_task (celery/app/trace.py"),
    ("Celery events sent (send_event / EventDispatcher.send)", "send (celery/events/dispatcher.py"),
    ("logging: Handler.handle (all log lines)", "handle (logging/__init__.py"),
    ("kombu: consume / drain events", "drain_events (kombu/"),
    ("kombu: message ack", "ack (kombu/message.py"),
    ("publish (kombu Producer.publish)", "publish (kombu/messaging.py"),
]


def profile_worker(
    ids: list[Any], pool: str, concurrency: int, sim_pid: int, timeout: float
) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        say("py-spy not installed: worker side skipped (pip install py-spy)")
        return
    log_dir = Path(os.environ["RRPD_VAR_DIR"])
    worker = fleet_bench.start_worker(pool, concurrency, log_dir)
    out = log_dir / f"pyspy-{pool}-{concurrency}.txt"
    try:
        # A round first, unprofiled: every pool process opens its connections and warms its
        # caches (SQLAlchemy's compiled statements) before the round that is sampled.
        fleet_bench.make_due(None)
        fleet_bench.run_round("warm-up", len(ids), worker, sim_pid, timeout)
        fleet_bench.make_due(None)
        spy_proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(worker.pid),
                "--subprocesses",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0)  # let py-spy attach to every process of the tree
        result = fleet_bench.run_round(
            "quiet round under py-spy", len(ids), worker, sim_pid, timeout
        )
        spy_proc.send_signal(2)
        spy_proc.wait(60)
    finally:
        fleet_bench.stop_worker(worker)
    n = result["syncs"]
    say()
    say(
        f"Worker ({pool} {concurrency}) quiet round under py-spy: {n} syncs, "
        f"{result['cpu_per_sync_ms']:.1f} ms worker CPU per check (/proc; sampling adds some), "
        f"{result['syncs_per_s']:.1f} syncs/s"
    )
    if not out.exists():
        say("py-spy wrote nothing")
        return
    comps: dict[str, int] = defaultdict(int)
    marks: dict[str, int] = defaultdict(int)
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        comps[_frame_component(frames[-1])] += count
        for label, marker in WORKER_MARKERS:
            if marker in stack:
                marks[label] += count
    if not total:
        say("no samples")
        return
    cpu_ms = result["cpu_per_sync_ms"]
    say(f"{total} non-idle samples; shares scaled to the measured {cpu_ms:.1f} ms per check")
    say(f"{'component (leaf frame)':<36} {'ms/check':>9} {'share':>6}")
    for name, c in sorted(comps.items(), key=lambda kv: -kv[1]):
        say(f"{name:<36} {cpu_ms * c / total:>9.2f} {100 * c / total:>5.1f}%")
    say()
    say(f"{'inclusive':<60} {'ms/check':>9} {'share':>6}")
    for label, _marker in WORKER_MARKERS:
        c = marks.get(label, 0)
        say(f"{label:<60} {cpu_ms * c / total:>9.2f} {100 * c / total:>5.1f}%")
    say(f"(raw stacks: {out})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--side", choices=("both", "inproc", "worker"), default="both")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=16)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--batch",
        dest="mode",
        action="store_const",
        const="batch",
        help="in-process: check_connections in batches of 50 (the default)",
    )
    mode.add_argument(
        "--single",
        dest="mode",
        action="store_const",
        const="single",
        help="in-process: run.sync_connection, one connection at a time",
    )
    parser.set_defaults(mode="batch")
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--save", help="write the in-process profile (pstats) to this file")
    args = parser.parse_args()
    n = args.workspaces

    fleet_bench._configure_environment()
    from pagerduty_sim.generator import fleet
    from pagerduty_sim.server import start_simulator
    from workers.core.migrate import upgrade
    from workers.core.settings import get_settings, reset_settings_cache

    fleet_bench.admin(f'CREATE DATABASE "{fleet_bench.DB_NAME}"')
    try:
        upgrade(get_settings().effective_database_url)
        scenario = fleet(n, fleet_bench.USERS, fleet_bench.SCHEDULES)
        with start_simulator(
            scenario, in_thread=False, latency_ms=fleet_bench.LATENCY_MS, log_level="error"
        ) as sim:
            os.environ["RRPD_PAGERDUTY_API_URL"] = sim.base_url
            os.environ["RRPD_PAGERDUTY_EU_API_URL"] = sim.eu_base_url
            reset_settings_cache()
            ids = fleet_bench.arrange_fleet(n)
            from workers.sync import run

            t = time.monotonic()
            for cid in ids:  # the first sync: every connection's directory read
                run.sync_connection(cid, kind="initial")
            say(f"{n} workspaces, first sync in-process: {time.monotonic() - t:.1f} s")
            assert sim.process is not None
            if args.side in ("both", "inproc"):
                profile = profile_batches if args.mode == "batch" else profile_inproc
                profile(ids, args.top, args.save)
            if args.side in ("both", "worker"):
                profile_worker(ids, args.pool, args.concurrency, sim.process.pid, args.timeout)
    finally:
        from workers.core.db import dispose_engines

        dispose_engines()
        fleet_bench.admin(f'DROP DATABASE IF EXISTS "{fleet_bench.DB_NAME}" WITH (FORCE)')
        fleet_bench._clean_redis()
    return 0


if __name__ == "__main__":
    sys.exit(main())

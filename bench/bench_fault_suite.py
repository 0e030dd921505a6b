"""The fault suite of issue 19: validate, exchange, "sync now" and disconnect under lost messages
and SIGKILLs at random moments; every piece of work must converge.

    .venv/bin/python bench/bench_fault_suite.py [--seed N] [--workspaces 12] [--lost 3]
        [--parallel 4] [--kill-share 0.6] [--kill-within 1.0] [--latency-ms 100] [--give-up 120]

Real processes: a simulator subprocess (demo scenario, consent page answered over HTTP, rate
limit off), ``rrpd api``, ``rrpd worker -Q interactive`` (prefork 2) and ``rrpd worker -Q sync``
(prefork 1), each worker with every background loop (``deadlines`` included) and a fixed node
name, so a restarted worker returns what its previous life held (``workers.tasking.redelivery``).
The work itself is in ``bench/fault_ops.py`` (what is asked over the API, what "converged" is).

1. **Lost messages** (deterministic), ``--lost`` per kind: the worker of the kind's queue is
   stopped (warm shutdown), the requests are answered and published, exactly their messages
   are removed from the queue in Redis (what a worker SIGKILLed between kombu's pop and its
   bookkeeping loses), the worker is started again. Only the connection's deadline can bring
   the work back.
2. **SIGKILLs**: ``--workspaces`` fresh workspaces (half connect with an API key, half with an
   OAuth login), ``--parallel`` at a time, each going through connect → sync now → bind a
   rotation → disconnect. After each request, with probability ``--kill-share``, the worker of
   its queue is SIGKILLed (its whole process group) a random 0..``--kill-within`` s later and
   restarted at once, as a supervisor does; the kill also hits whatever else that worker held.
   Seeded (``--seed``, printed): the same seed draws the same starts and kills, though where a
   kill lands still depends on the machine's timing.

Time: from the request's answer (the callback's, for an OAuth login) to converged. "hit" is
work in flight (asked, not yet converged) when its queue's worker was killed. "end" is what
issue 19's goals measure (a validation ended, connected or invalid, within 60 s; a disconnect
done within 30 s, p99) from the last fault: the request, or the last SIGKILL of its queue's
worker while it was in flight. Exit status 1 if anything did not converge within
``--give-up`` seconds. Needs PostgreSQL at 127.0.0.1:5432 (a database of its own, dropped
after) and Redis at 127.0.0.1:6379 (a key prefix of its own, deleted after). Figures go to
``bench/results/bench_fault_suite.json``; process logs stay in the printed var directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import configure, percentiles  # noqa: E402
from bench.fault_ops import KINDS, QUEUE, Ops, Outcome, Workspace  # noqa: E402
from bench.processes import free_port, spawn_rrpd, stop  # noqa: E402

RUN = uuid.uuid4().hex[:6]
DB = f"rrpd_bench_suite_{RUN}"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = {"interactive": "2", "sync": "1"}
GOALS = {"validate": 60.0, "exchange": 60.0, "disconnect": 30.0}  # issue 19


class Workers:
    """One worker per queue; the killer and the phases start, stop and kill them."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes] | None] = dict.fromkeys(CONCURRENCY)
        self.starts = 0
        self.kills: list[tuple[float, str]] = []  # (monotonic, queue)
        self.lock = threading.Lock()

    def start(self, queue: str) -> None:
        with self.lock:
            self._start(queue)

    def _start(self, queue: str) -> None:
        self.starts += 1
        self.procs[queue] = spawn_rrpd(
            f"worker-{queue}-{self.starts}",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            CONCURRENCY[queue],
            "--hostname",
            f"bench-{queue}-{RUN}@%h",
        )

    def stop(self, queue: str) -> None:
        """Warm shutdown (SIGTERM to the main process only: it finishes what it runs)."""
        with self.lock:
            proc = self.procs[queue]
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    stop(proc)
            self.procs[queue] = None

    def kill_and_restart(self, queue: str) -> None:
        """SIGKILL the queue's worker and start the next one, in one step: two kills close
        together each kill a live worker, and only one worker per node name ever runs."""
        with self.lock:
            proc = self.procs[queue]
            assert proc is not None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills.append((time.monotonic(), queue))
            self._start(queue)

    def stop_all(self) -> None:
        for queue in CONCURRENCY:
            self.stop(queue)


def _new_workspaces(n: int, label: str, connected_key: str | None = None) -> list[Workspace]:
    """``n`` workspaces; with ``connected_key``, already connected with it and bound (rows)."""
    from api_stub.auth import issue_token
    from bench.arrange import bound_workspace, fresh_workspace
    from workers.core.db import transaction

    made: list[Any] = []
    people = [("erin@example.com", "Erin")]
    with transaction() as s:
        for i in range(n):
            name = f"Suite {label} {i}"
            if connected_key is None:
                made.append(fresh_workspace(s, name=name, people=people))
            else:
                made.append(
                    bound_workspace(
                        s, name=name, api_key=connected_key, schedule_id="PSPRIMA", people=people
                    )
                )
    return [
        Workspace(
            m.workspace_id,
            m.admin_id,
            m.rotation_id,
            {"Authorization": f"Bearer {issue_token(m.workspace_id, m.admin_id, 'admin')}"},
        )
        for m in made
    ]


def _summary(outcomes: list[Outcome], kills: list[tuple[float, str]]) -> dict[str, Any]:
    """Per kind: time to converge from the request; and, for the goals, the time to the end
    (a validation's first end, a disconnect done) from the last fault: the request, or the
    last SIGKILL of its queue's worker while it was in flight."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if not mine:
            continue
        times = [o.seconds for o in mine if o.seconds is not None]
        hit, since_fault, records = [], [], []
        for o in mine:
            end = o.first_end if kind in ("validate", "exchange") else o.done
            upto = o.done if o.done is not None else float("inf")
            mine_kills = [t for t, q in kills if q == QUEUE[kind] and o.asked <= t <= upto]
            if mine_kills and o.done is not None:
                hit.append(o.done - o.asked)
            if end is not None:
                since_fault.append(end - max([o.asked, *[t for t in mine_kills if t <= end]]))
            records.append(
                {
                    "workspace": str(o.workspace_id),
                    "seconds": None if o.seconds is None else round(o.seconds, 2),
                    "kills": len(mine_kills),
                    "relogins": o.relogins,
                    "error": o.error,
                }
            )
        out[kind] = {
            "asked": len(mine),
            "converged": len(times),
            "not_converged": len(mine) - len(times),
            **percentiles(times, digits=2),
            "hit_by_kill": len(hit),
            "hit": percentiles(hit, digits=2),
            "since_fault": percentiles(since_fault, digits=2),
            "relogins": sum(o.relogins for o in mine),
            "errors": [o.error for o in mine if o.error],
            "each": records,
        }
    return out


def _lose(queue: str, task_ids: list[str], timeout: float = 15.0) -> int:
    """Wait until the messages of ``task_ids`` are in ``queue``'s Redis lists (published by the
    API's after-commit relay), then remove exactly those: lost, as kombu#305 loses them."""
    from workers.core.redis import client, key

    r = client()
    names = [f"{key()}:{queue}"] + [f"{key()}:{queue}\x06\x16{p}" for p in (3, 6, 9)]
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, tuple[str, bytes]] = {}
        for name in names:
            for raw in r.lrange(name, 0, -1):
                task_id = json.loads(raw)["headers"]["id"]
                if task_id in task_ids:
                    found[task_id] = (name, raw)
        if len(found) == len(task_ids):
            return sum(int(r.lrem(name, 1, raw)) for name, raw in found.values())
        assert time.monotonic() < deadline, f"not all published to {queue}: {found.keys()}"
        time.sleep(0.05)


def lost_messages(ops: Ops, workers: Workers, n: int) -> dict[str, Any]:
    outcomes: list[Outcome] = []
    for kind in KINDS:
        queue = QUEUE[kind]
        key = ops.api_key if kind in ("sync", "disconnect") else None
        spaces = _new_workspaces(n, f"lost-{kind}", connected_key=key)
        workers.stop(queue)
        asked = [ops.ask(kind, ws) for ws in spaces]
        removed = _lose(queue, [str(o.task_id) for o in asked])
        workers.start(queue)
        print(f"  lost {kind}: {n} asked, {removed} messages removed from {queue}", flush=True)
        outcomes += [ops.wait(o, ws) for o, ws in zip(asked, spaces, strict=True)]
    return _summary(outcomes, [])


@dataclass
class Plan:
    """One workspace's run: how it connects, when it starts, and for each step whether its
    queue's worker is SIGKILLed and how long after the request (drawn from the seed)."""

    ws: Workspace
    connect: str
    delay: float
    kills: dict[str, float | None]


def _plans(spaces: list[Workspace], args: argparse.Namespace) -> list[Plan]:
    rng = random.Random(args.seed)
    plans = []
    for i, ws in enumerate(spaces):
        connect = "validate" if i % 2 == 0 else "exchange"
        kills = {
            kind: rng.uniform(0, args.kill_within) if rng.random() < args.kill_share else None
            for kind in (connect, "sync", "disconnect")
        }
        plans.append(Plan(ws, connect, rng.uniform(0, args.stagger * i), kills))
    return plans


def _pipeline(ops: Ops, workers: Workers, plan: Plan) -> list[Outcome]:
    time.sleep(plan.delay)
    ws = plan.ws
    ops = dataclasses.replace(ops, http=ops.http.__class__(timeout=30, follow_redirects=False))
    done: list[Outcome] = []
    timers: list[threading.Timer] = []
    try:
        for kind in (plan.connect, "sync", "bind", "disconnect"):
            if kind == "bind":
                ops.bind(ws, "PSPRIMA")
                continue
            out = ops.ask(kind, ws)
            after = plan.kills[kind]
            if after is not None:
                timer = threading.Timer(after, workers.kill_and_restart, args=(QUEUE[kind],))
                timer.start()
                timers.append(timer)
            done.append(ops.wait(out, ws))
            if out.error:
                break
    except Exception as exc:
        # A failed bind leaves the disconnect not done (it would have nothing to make Manual).
        step = "disconnect" if kind == "bind" else kind
        done.append(Outcome(step, ws.workspace_id, time.monotonic(), error=repr(exc)[:300]))
    finally:
        for timer in timers:
            timer.join()
        ops.http.close()
    return done


def sigkills(ops: Ops, workers: Workers, args: argparse.Namespace) -> dict[str, Any]:
    plans = _plans(_new_workspaces(args.workspaces, "kill"), args)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(lambda plan: _pipeline(ops, workers, plan), plans))
    outcomes = [o for steps in results for o in steps]
    # A pipeline that stopped early did not ask for its later steps: each counts as not done.
    for steps, plan in zip(results, plans, strict=True):
        for kind in (plan.connect, "sync", "disconnect")[len(steps) :]:
            outcomes.append(Outcome(kind, plan.ws.workspace_id, 0.0, error="not reached"))
    by_queue = {q: sum(1 for _t, k in workers.kills if k == q) for q in CONCURRENCY}
    return {
        "seconds": round(time.monotonic() - started, 1),
        "kills": len(workers.kills),
        "kills_by_queue": by_queue,
        **_summary(outcomes, workers.kills),
    }


def _cleanup_redis(prefix: str) -> None:
    import redis

    for db in (0, 1):
        r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{db}")
        for name in r.scan_iter(f"{prefix}*", count=1000):
            r.delete(name)


def _print(label: str, figures: dict[str, Any]) -> int:
    bad = 0
    print(f"\n{label}")
    print(
        f"{'kind':<11} {'converged':>10} {'p50':>7} {'p99':>7} {'max':>7} {'hit':>4} "
        f"{'p99 hit':>8} {'end p99':>8}  goal"
    )

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}s"

    for kind in KINDS:
        f = figures.get(kind)
        if f is None:
            continue
        bad += f["not_converged"]
        goal, ends = GOALS.get(kind), f["since_fault"]["p99_s"]
        met = "" if goal is None or ends is None else ("met" if ends <= goal else "MISSED")
        print(
            f"{kind:<11} {f['converged']:>4}/{f['asked']:<5} {s(f['p50_s']):>7} "
            f"{s(f['p99_s']):>7} {s(f['max_s']):>7} {f['hit_by_kill']:>4} "
            f"{s(f['hit']['p99_s']):>8} {s(ends):>8}  {met}"
            + (f" {goal:.0f}s" if goal else "")
            + (f"  relogins {f['relogins']}" if f["relogins"] else "")
        )
        for err in f["errors"]:
            print(f"    not converged: {err}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workspaces", type=int, default=12, help="workspaces under SIGKILLs")
    parser.add_argument("--lost", type=int, default=3, help="lost messages per kind")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument(
        "--kill-share", type=float, default=0.6, help="share of requests followed by a SIGKILL"
    )
    parser.add_argument(
        "--kill-within", type=float, default=1.0, help="the SIGKILL lands 0..this s after"
    )
    parser.add_argument("--stagger", type=float, default=1.5, help="start spread per workspace")
    parser.add_argument("--latency-ms", type=int, default=100, help="simulator per request")
    parser.add_argument("--give-up", type=float, default=120.0)
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    port = free_port()
    var = configure("suite", RUN, DB, RRPD_PUBLIC_URL=f"http://127.0.0.1:{port}")
    print(f"bench_fault_suite run {RUN}: seed {args.seed}, logs in {var}", flush=True)

    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{DB}"'))
    from pagerduty_sim.server import start_simulator
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade
    from workers.core.settings import reset_settings_cache

    upgrade()
    figures: dict[str, Any] = {
        "seed": args.seed,
        "args": vars(args),
        "load_average_start": os.getloadavg()[0],
    }
    workers = Workers()
    api_proc = None
    try:
        with start_simulator("demo", in_thread=False, latency_ms=args.latency_ms) as sim:
            sim.control.post("/rate_limit", json={"enabled": False}).raise_for_status()
            os.environ.update(
                RRPD_PAGERDUTY_API_URL=sim.base_url,
                RRPD_PAGERDUTY_EU_API_URL=sim.eu_base_url,
                RRPD_PAGERDUTY_IDENTITY_URL=sim.identity_url,
            )
            reset_settings_cache()
            creds = sim.credentials()
            ops = Ops(
                api=f"http://127.0.0.1:{port}",
                api_key=next(k["key"] for k in creds["api_keys"] if k["label"] == "demo-readonly"),
                oauth_app=next(a for a in creds["oauth_apps"] if a["label"] == "demo-oauth"),
                give_up=args.give_up,
            )
            api_proc = spawn_rrpd("api", "api", "--port", str(port))
            for queue in CONCURRENCY:
                workers.start(queue)
            _wait_ready(ops)
            print("phase 1: lost messages", flush=True)
            figures["lost_message"] = lost_messages(ops, workers, args.lost)
            print("phase 2: SIGKILLs", flush=True)
            figures["sigkill"] = sigkills(ops, workers, args)
    finally:
        workers.stop_all()
        if api_proc is not None:
            stop(api_proc)
        dispose_engines()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
        _cleanup_redis(f"rrpdbench-{RUN}")

    figures["load_average_end"] = os.getloadavg()[0]
    print(
        f"\nload average (1 min): {figures['load_average_start']:.1f} at the start, "
        f"{figures['load_average_end']:.1f} at the end"
    )
    bad = _print(f"Lost messages ({args.lost} per kind)", figures["lost_message"])
    k = figures["sigkill"]
    bad += _print(
        f"SIGKILLs (seed {args.seed}): {k['kills']} kills {k['kills_by_queue']} over "
        f"{k['seconds']} s, {args.workspaces} workspaces",
        k,
    )
    print(f"\nnot converged: {bad}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_fault_suite.json").write_text(json.dumps(figures, indent=2, default=str))
    return 1 if bad else 0


def _wait_ready(ops: Ops) -> None:
    """The API answers and both workers consume (a ping round-trips on each queue)."""
    import httpx

    from workers.tasking.app import app

    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{ops.api}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.2)
    for queue in CONCURRENCY:
        result = app.send_task("rrpd.ping", kwargs={"payload": "ready"}, queue=queue)
        result.get(timeout=max(1.0, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())

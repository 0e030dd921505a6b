"""Disconnects after a lost message and after SIGKILLs: how long until each one is done.

    .venv/bin/python bench/bench_faults.py [--workspaces 10] [--kills 10] [--give-up 120]

``--workspaces`` workspaces, each connected with an API key and with one rotation bound to the
demo scenario's Primary schedule, in a simulator subprocess. A real ``rrpd api`` and a real
``rrpd worker -Q interactive`` (prefork, 2 processes, every background loop) do the work.

* **Lost message** (deterministic): with no worker consuming (it is stopped; a frozen one's
  pending BRPOP would still take a message), the admin's ``DELETE /v1/workspaces/{id}/pagerduty``
  is answered 202 and its task published, then the ``interactive`` queue is emptied in Redis
  (the message kombu popped and a killed worker lost), and the worker started again. Time:
  from the 202 to the connection ``disconnected`` (its rotation Manual, in the same
  transaction).
* **SIGKILL**: ``--kills`` disconnects, each followed after a random 0-400 ms by a SIGKILL of the
  whole worker (main process and pool), restarted at once, as a supervisor does.

Baseline in the same run: the same two phases with the worker's ``deadlines`` loop off
(``RRPD_WORKER_LOOPS`` = every loop but it), i.e. nothing in the database drives lost work. A
disconnect not done within ``--give-up`` seconds counts as never done.

Needs PostgreSQL at 127.0.0.1:5432 (a database of its own, dropped after) and Redis at
127.0.0.1:6379 (a key prefix of its own). Figures go to ``bench/results/bench_faults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.arrange import bound_workspace  # noqa: E402
from bench.environment import configure, percentiles  # noqa: E402
from bench.processes import free_port, spawn_rrpd, stop  # noqa: E402

RUN = uuid.uuid4().hex[:6]
DB = f"rrpd_bench_faults_{RUN}"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ALL_LOOPS = "handoffs,sync-runs-retention,outbox-relay,outbox-retention,redelivery,intake"


class Stack:
    def __init__(self, loops: str) -> None:
        self.loops = loops
        self.worker: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start_worker(self) -> None:
        self.starts += 1
        self.worker = spawn_rrpd(
            f"worker-{self.starts}",
            "worker",
            "--queues",
            "interactive",
            "--concurrency",
            "2",
            "--hostname",
            f"bench-interactive-{RUN}@%h",
            extra_env={"RRPD_WORKER_LOOPS": self.loops},
        )

    def kill_and_restart(self) -> None:
        assert self.worker is not None  # (the lost-message step restarted it)
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.start_worker()

    def stop(self) -> None:
        if self.worker is not None:
            stop(self.worker)
            self.worker = None


def _status(cid: uuid.UUID) -> str:
    from sqlalchemy import select

    from models import PagerDutyConnection
    from workers.core.db import transaction

    with transaction() as s:
        return str(
            s.scalar(select(PagerDutyConnection.status).where(PagerDutyConnection.id == cid))
        )


def _wait_done(cids: dict[uuid.UUID, float], give_up: float) -> dict[uuid.UUID, float | None]:
    """Seconds from each request (monotonic time given) to ``disconnected``; None: not done."""
    done: dict[uuid.UUID, float | None] = {}
    deadline = max(cids.values()) + give_up
    while len(done) < len(cids) and time.monotonic() < deadline:
        for cid, asked in cids.items():
            if cid not in done and _status(cid) == "disconnected":
                done[cid] = time.monotonic() - asked
        time.sleep(0.2)
    return {cid: done.get(cid) for cid in cids}


def _empty_interactive_queue() -> int:
    from workers.core.redis import client
    from workers.core.settings import get_settings

    prefix = get_settings().redis_key_prefix
    r = client()
    removed = 0
    for name in r.scan_iter(f"{prefix}*interactive*"):
        if r.type(name) in (b"list", "list"):
            removed += int(r.llen(name))
            r.delete(name)
    return removed


def _phase(
    label: str,
    loops: str,
    workspaces: list[Any],
    api: str,
    headers: dict[str, dict[str, str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    import httpx

    half = len(workspaces) // 2
    lost, killed = workspaces[:half], workspaces[half : half + args.kills]
    stack = Stack(loops)
    stack.start_worker()
    time.sleep(6)  # the worker's start-up
    out: dict[str, Any] = {"loops": loops}
    try:
        # Lost messages: no consumer, published task, emptied queue, a worker again.
        asked: dict[uuid.UUID, float] = {}
        stack.stop()
        removed = 0
        for b in lost:
            r = httpx.delete(
                f"{api}/{b.workspace_id}/pagerduty", headers=headers[str(b.workspace_id)]
            )
            assert r.status_code == 202, r.text
            asked[b.connection_id] = time.monotonic()
        time.sleep(1.0)  # the API's after-commit relay publishes
        removed = _empty_interactive_queue()
        stack.start_worker()
        result = _wait_done(asked, args.give_up)
        times = [t for t in result.values() if t is not None]
        out["lost_message"] = {
            "disconnects": len(lost),
            "messages_removed": removed,
            "done": len(times),
            **percentiles(times, digits=2),
        }
        # SIGKILLs at random moments of a disconnect.
        rng = random.Random(7)
        asked = {}
        for b in killed:
            r = httpx.delete(
                f"{api}/{b.workspace_id}/pagerduty", headers=headers[str(b.workspace_id)]
            )
            assert r.status_code == 202, r.text
            asked[b.connection_id] = time.monotonic()
            time.sleep(rng.uniform(0, 0.4))
            stack.kill_and_restart()
            time.sleep(0.5)
        result = _wait_done(asked, args.give_up)
        times = [t for t in result.values() if t is not None]
        out["sigkill"] = {
            "disconnects": len(killed),
            "done": len(times),
            **percentiles(times, digits=2),
        }
    finally:
        stack.stop()
    print(f"{label}: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspaces", type=int, default=10, help="lost-message disconnects")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLed disconnects")
    parser.add_argument("--give-up", type=float, default=120.0)
    args = parser.parse_args()
    configure("faults", RUN, DB)

    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{DB}"'))
    from api_stub.auth import issue_token
    from pagerduty_sim.server import start_simulator
    from workers.core.db import dispose_engines, transaction
    from workers.core.migrate import upgrade

    upgrade()
    figures: dict[str, Any] = {}
    api_proc = None
    try:
        with start_simulator("demo", in_thread=False) as sim:
            os.environ.update(
                RRPD_PAGERDUTY_API_URL=sim.base_url,
                RRPD_PAGERDUTY_EU_API_URL=sim.eu_base_url,
                RRPD_PAGERDUTY_IDENTITY_URL=sim.identity_url,
            )
            from workers.core.settings import reset_settings_cache

            reset_settings_cache()
            key = next(
                k["key"] for k in sim.credentials()["api_keys"] if k["label"] == "demo-readonly"
            )
            per_phase = args.workspaces + args.kills
            bound: list[Any] = []
            with transaction() as s:
                for i in range(2 * per_phase):
                    bound.append(
                        bound_workspace(
                            s,
                            name=f"Faults {i}",
                            api_key=key,
                            schedule_id="PSPRIMA",
                            people=[("erin@example.com", "Erin")],
                        )
                    )
            headers = {
                str(b.workspace_id): {
                    "Authorization": f"Bearer {issue_token(b.workspace_id, b.admin_id, 'admin')}"
                }
                for b in bound
            }
            port = free_port()
            api_proc = spawn_rrpd("api", "api", "--port", str(port))
            api = f"http://127.0.0.1:{port}/v1/workspaces"
            import httpx

            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
            baseline_ws, ours_ws = bound[:per_phase], bound[per_phase:]
            figures["baseline"] = _phase("baseline", ALL_LOOPS, baseline_ws, api, headers, args)
            figures["deadlines"] = _phase("deadlines", "all", ours_ws, api, headers, args)
    finally:
        if api_proc is not None:
            stop(api_proc)
        dispose_engines()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))

    print(f"\nDisconnects until done (give up after {args.give_up:.0f} s)")
    print(f"{'':24} {'done':>9} {'p50':>8} {'p99':>8} {'max':>8}")
    for label in ("baseline", "deadlines"):
        for case in ("lost_message", "sigkill"):
            f = figures[label][case]

            def s(v: float | None) -> str:
                return "-" if v is None else f"{v:.1f}s"

            print(
                f"{label + ' ' + case:24} {f['done']:>4}/{f['disconnects']:<4} "
                f"{s(f['p50_s']):>8} {s(f['p99_s']):>8} {s(f['max_s']):>8}"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_faults.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

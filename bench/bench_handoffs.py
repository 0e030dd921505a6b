"""Handoff lag: from a scheduled handoff's instant to the API showing the new person.

    .venv/bin/python bench/bench_handoffs.py [--handoffs 12] [--gap 4]

One workspace, one rotation bound to the demo scenario's Primary schedule, in a simulator
subprocess with 50 ms latency per request. Overrides make Erin and Frank alternate every
``--gap`` seconds (``--handoffs`` instants, whole seconds, starting ~10 s ahead); one sync reads
them all (they are within the 6 h horizon). Then no sync runs: a real ``rrpd worker`` process
runs the ``handoffs`` loop, a real ``rrpd api`` process serves the rotation, and this script
polls ``GET /v1/workspaces/{id}/rotations`` every 50 ms, recording when each instant's person
first shows. Lag = first seen - instant (includes up to one poll interval plus the request).

Baseline (the old behaviour: a handoff is seen only at the next periodic sync) is MODELLED
from the same run: the sync duration ``d`` is measured here (median of ``--syncs`` manual syncs
of the same connection); with syncs every ``--interval`` seconds at a phase unrelated to the
instant, lag is uniform on [0, interval) + d, so p50 = interval/2 + d, p99 = 0.99 interval + d,
max = interval + d. (Today's cadence bug makes the real interval 60 or 120 s: issue 11.)

Needs PostgreSQL at 127.0.0.1:5432 (a database of its own, dropped after) and Redis at
127.0.0.1:6379 (a key prefix of its own). Figures go to ``bench/results/bench_handoffs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.arrange import bound_workspace  # noqa: E402
from bench.environment import configure, percentiles  # noqa: E402
from bench.processes import free_port, spawn_rrpd, stop  # noqa: E402

RUN = uuid.uuid4().hex[:6]
DB = f"rrpd_bench_handoffs_{RUN}"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ACCOUNT, SCHEDULE = "acme", "PSPRIMA"
PEOPLE = {"Erin": "PUERIN1", "Frank": "PUFRANK"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--handoffs", type=int, default=12)
    parser.add_argument("--gap", type=int, default=4, help="seconds between handoffs")
    parser.add_argument("--syncs", type=int, default=5, help="syncs timed for the baseline")
    parser.add_argument("--interval", type=float, default=60.0, help="baseline sync interval")
    args = parser.parse_args()
    # No beat runs; the worker only runs the loops (no relay needed: nothing is enqueued).
    configure("handoffs", RUN, DB, RRPD_WORKER_LOOPS="handoffs")

    import httpx
    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{DB}"'))
    from api_stub.auth import issue_token
    from pagerduty_sim.server import start_simulator
    from workers.core.db import dispose_engines, transaction
    from workers.core.migrate import upgrade
    from workers.sync import run as sync

    upgrade()
    procs: list[subprocess.Popen[bytes]] = []
    figures: dict[str, Any] = {"handoffs": args.handoffs, "gap_s": args.gap}
    try:
        with start_simulator("demo", in_thread=False, latency_ms=50) as sim:
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
            with transaction() as s:
                bound = bound_workspace(
                    s,
                    name="Bench",
                    api_key=key,
                    schedule_id=SCHEDULE,
                    people=[(f"{name.lower()}@example.com", name) for name in PEOPLE],
                )
            ws_id, cid, rid, mid = (
                bound.workspace_id,
                bound.connection_id,
                bound.rotation_id,
                bound.admin_id,
            )
            headers = {"Authorization": f"Bearer {issue_token(ws_id, mid, 'admin')}"}

            port = free_port()
            procs.append(spawn_rrpd("api", "api", "--port", str(port)))
            procs.append(spawn_rrpd("worker", "worker", "--queues", "sync", "--concurrency", "1"))
            api = f"http://127.0.0.1:{port}/v1/workspaces/{ws_id}/rotations"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(api, headers=headers, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
            time.sleep(5)  # the worker's start-up (its loop thread starts with it)

            # Baseline part: how long a sync of this connection takes, start to commit.
            durations = []
            for _ in range(args.syncs):
                t0 = time.perf_counter()
                assert sync.sync_connection(cid, kind="manual").status == "succeeded"
                durations.append(time.perf_counter() - t0)
            d = statistics.median(durations)

            # The handoffs: Frank now, then Erin, Frank, ... every --gap seconds.
            first = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
            instants = [first + timedelta(seconds=i * args.gap) for i in range(args.handoffs)]
            names = ["Erin" if i % 2 == 0 else "Frank" for i in range(args.handoffs)]
            ctl = f"/accounts/{ACCOUNT}/schedules/{SCHEDULE}/overrides"
            spans = [(first - timedelta(minutes=5), first, "Frank")]
            spans += [
                (at, at + timedelta(seconds=args.gap), n)
                for at, n in zip(instants, names, strict=True)
            ]
            for start, end, name in spans:
                sim.control.post(
                    ctl,
                    json={
                        "user_id": PEOPLE[name],
                        "start": start.isoformat(),
                        "end": end.isoformat(),
                    },
                ).raise_for_status()
            assert sync.sync_connection(cid, kind="manual").status == "succeeded"
            assert datetime.now(UTC) < first, "set-up overran the first instant"

            lags: list[float] = []
            with httpx.Client(headers=headers, timeout=5) as client:
                for at, name in zip(instants, names, strict=True):
                    while True:
                        body = client.get(api).json()
                        (view,) = [r for r in body["rotations"] if r["id"] == str(rid)]
                        now = datetime.now(UTC)
                        if [m["name"] for m in view["on_duty"]] == [name]:
                            if now >= at:  # before the instant it is the previous person's turn
                                lags.append((now - at).total_seconds())
                                break
                            raise AssertionError(f"{name} on duty before {at}")
                        assert now < at + timedelta(seconds=30), f"{name} never showed"
                        time.sleep(0.05)
            figures["with_loop"] = percentiles(lags)
            figures["lags_s"] = [round(x, 3) for x in lags]
            figures["sync_duration_s"] = round(d, 3)
            figures["baseline_model"] = {
                "interval_s": args.interval,
                "p50_s": round(args.interval / 2 + d, 3),
                "p99_s": round(0.99 * args.interval + d, 3),
                "max_s": round(args.interval + d, 3),
            }
    finally:
        for proc in procs:
            stop(proc)
        dispose_engines()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))

    w, b = figures["with_loop"], figures["baseline_model"]
    print(f"Handoff lag over {args.handoffs} handoffs (instant -> API shows the new person)")
    print(f"{'':22} {'p50':>8} {'p99':>8} {'max':>8}")
    print(f"{'handoffs loop':22} {w['p50_s']:>7.3f}s {w['p99_s']:>7.3f}s {w['max_s']:>7.3f}s")
    print(
        f"{'baseline (model)':22} {b['p50_s']:>7.3f}s {b['p99_s']:>7.3f}s {b['max_s']:>7.3f}s"
        f"   (sync every {args.interval:.0f} s; measured sync {d * 1000:.0f} ms)"
    )
    print(
        f"ratio baseline/loop: p50 {b['p50_s'] / w['p50_s']:.0f}x, "
        f"p99 {b['p99_s'] / w['p99_s']:.0f}x"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_handoffs.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

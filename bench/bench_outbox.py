"""The outbox's figures: commit-to-broker latency (fast path, loop only), relay throughput, and
an API write with Redis down.

    .venv/bin/python bench/bench_outbox.py [--commits 300] [--rows 20000]

Needs PostgreSQL at 127.0.0.1:5432 (a database of its own is created and dropped) and Redis at
127.0.0.1:6379 (a key prefix of its own, deleted afterwards). Figures go to
``bench/results/bench_outbox.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN = uuid.uuid4().hex[:6]
DB = f"rrpd_bench_outbox_{RUN}"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
os.environ.update(
    RRPD_ENV="test",
    RRPD_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{DB}",
    RRPD_BROKER_URL="redis://127.0.0.1:6379/0",
    RRPD_RESULT_BACKEND="redis://127.0.0.1:6379/1",
    RRPD_REDIS_KEY_PREFIX=f"rrpdbench-{RUN}",
    RRPD_VAR_DIR=str(ROOT / "var" / f"bench-outbox-{RUN}"),
    RRPD_LOG_LEVEL="WARNING",
)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()

    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine, func, select, text

    os.environ["RRPD_ENCRYPTION_KEYS"] = f"b1={Fernet.generate_key().decode()}"
    os.environ["RRPD_API_JWT_SECRET"] = "bench-secret-" + "x" * 40
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{DB}"'))
    import redis

    from models import OutboxMessage
    from workers.core.db import transaction
    from workers.core.migrate import upgrade
    from workers.core.redis import client
    from workers.outbox import fastpath, relay
    from workers.tasking.contract import PING
    from workers.tasking.enqueue import enqueue

    upgrade()
    queue = f"{os.environ['RRPD_REDIS_KEY_PREFIX']}:interactive"
    figures: dict[str, object] = {}
    try:
        # 1. Commit -> message in Redis, through the fast path (a thread of the writer).
        r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        latencies = []
        for n in range(args.commits):
            with transaction() as tx:
                enqueue(tx, PING, payload=str(n))
            committed = time.perf_counter()
            assert r.brpop([queue], timeout=10), "nothing arrived"
            latencies.append(time.perf_counter() - committed)
        figures["fast_path_commit_to_broker"] = _percentiles(latencies)

        # 2. Throughput of one relay: rows committed with the fast path off, then drained.
        real_kick = fastpath.kick
        fastpath.kick = lambda lanes: None  # type: ignore[assignment]
        try:
            with transaction() as tx:
                for n in range(args.rows):
                    enqueue(tx, PING, payload=str(n))
        finally:
            fastpath.kick = real_kick  # type: ignore[assignment]
        started = time.perf_counter()
        while any(r_.published or r_.busy for r_ in relay.relay_all()):
            pass
        seconds = time.perf_counter() - started
        with transaction() as tx:
            left = tx.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None)))
        assert left == 0
        figures["relay_throughput"] = {
            "rows": args.rows,
            "seconds": round(seconds, 2),
            "rows_per_second": round(args.rows / seconds),
            "batch": relay.get_settings().outbox_batch,
        }

        # 3. The same for events (one pipelined XADD round trip per batch).
        from workers import events

        fastpath.kick = lambda lanes: None  # type: ignore[assignment]
        try:
            with transaction() as tx:
                rotations = [uuid.uuid4() for _ in range(100)]
                for n in range(args.rows):
                    events.rotation_bound(
                        tx,
                        workspace_id=rotations[0],
                        rotation_id=rotations[n % 100],
                        connection_id=rotations[0],
                        schedule_id="PSBENCH",
                        previous_schedule_id=None,
                    )
        finally:
            fastpath.kick = real_kick  # type: ignore[assignment]
        started = time.perf_counter()
        while any(r_.published or r_.busy for r_ in relay.relay_all()):
            pass
        seconds = time.perf_counter() - started
        figures["relay_throughput_events"] = {
            "rows": args.rows,
            "seconds": round(seconds, 2),
            "rows_per_second": round(args.rows / seconds),
        }
    finally:
        for key in client().scan_iter(f"{os.environ['RRPD_REDIS_KEY_PREFIX']}*"):
            client().delete(key)
        from workers.core.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    out = ROOT / "bench" / "results" / "bench_outbox.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

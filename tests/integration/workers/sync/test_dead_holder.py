"""A sync worker SIGKILLed mid-sync: "sync now" is served once its lease lapses, not 200 s.

The pass stalls on a PagerDuty ``/users`` read that answers only after two minutes, so the
kill lands mid-sync however slow the machine. The worker runs with a short, explicit lease
(``RRPD_SYNC_LEASE_SECONDS``), so the dead holder's lease lapses within seconds and the
coalesced request's delayed re-check (a lease and 2 s later) runs the sync. Every wait is a
condition polled with a generous timeout, never a sleep that assumes speed. The worker is on a
broker namespace of its own (``isolated_worker``), so no other test's worker takes part.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis
from sqlalchemy import select

from models import SyncRun, utcnow
from tests.support import processes
from tests.support.sync import arrange_demo

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]
SYNC = "pagerduty.sync_connection"
LEASE_SECONDS = 3
# Generous: a loaded machine may be slow; a fast one is not waited for (conditions are polled).
TIMEOUT = 90.0
T = TypeVar("T")


def _lease(r: redis.Redis, prefix: str, cid: object) -> bytes | None:
    value = r.get(f"{prefix}lock:sync:{cid}")
    return value if isinstance(value, bytes) else None


def _until(what: Callable[[], T | None], failure: str, timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while (value := what()) is None or value is False:
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)
    return value


def _users_reads(sim: Any) -> int:
    by_path = sim.control.get("/stats").json()["by_path"]
    return sum(n for path, n in by_path.items() if path.startswith("/users"))


def test_sync_now_after_the_holder_was_killed_is_served_once_its_lease_lapses(session, sim) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, sim)
    cid = demo.connection_id
    sim.control.post(
        "/faults", json={"kind": "latency", "path_prefix": "/users", "latency_ms": 120_000}
    ).raise_for_status()
    sim.control.post("/stats/reset").raise_for_status()
    r = redis.Redis.from_url(os.environ["RRPD_BROKER_URL"])
    env = {
        "RRPD_SYNC_LEASE_SECONDS": str(LEASE_SECONDS),
        # The stalled read must outlast the kill, not time out first.
        "RRPD_PAGERDUTY_TIMEOUT_SECONDS": "300",
    }
    with processes.isolated_worker(queues="interactive,sync", concurrency=2, env=env) as (
        _proc,
        client,
    ):
        prefix = client.conf.broker_transport_options["global_keyprefix"]  # type: ignore[attr-defined]
        client.send_task(SYNC, kwargs={"connection_id": str(cid), "kind": "manual"})  # type: ignore[attr-defined]
        held = _until(lambda: _lease(r, prefix, cid), "the sync never took its lease")
        _until(lambda: _users_reads(sim) > 0, "the sync never reached its /users read")
        holder_pid = int(held.decode().split("|")[1].rsplit(":", 1)[1])
        os.kill(holder_pid, signal.SIGKILL)  # inside the stalled /users read
        killed_at = utcnow()
        kill_seen = time.monotonic()
        sim.control.delete("/faults").raise_for_status()
        assert _lease(r, prefix, cid) == held  # the dead holder's lease is still there

        # "Sync now": coalesced into the dead holder's pass, then served by the re-check.
        client.send_task(SYNC, kwargs={"connection_id": str(cid), "kind": "manual"})  # type: ignore[attr-defined]
        # Nobody renews a dead holder's lease: it lapses by itself (or is replaced by the
        # next holder's once lapsed).
        _until(lambda: _lease(r, prefix, cid) != held, "the dead holder's lease never lapsed")

        def served() -> SyncRun | None:
            session.expire_all()
            return session.scalars(
                select(SyncRun).where(
                    SyncRun.connection_id == cid,
                    SyncRun.status == "succeeded",
                    SyncRun.started_at >= killed_at,
                )
            ).first()

        run = _until(served, f"no sync served within {TIMEOUT:.0f} s of the kill")
        served_after = time.monotonic() - kill_seen
    assert run.kind == "manual"
    print(f"served {served_after:.1f} s after the kill (lease {LEASE_SECONDS} s)")

"""A sync worker SIGKILLed mid-sync: "sync now" is served within a lease, not 200 s.

The pass stalls on a slow PagerDuty (3 s per ``/users`` read) so the kill lands mid-sync; the
dead holder's lease lapses within ``SYNC_LEASE_SECONDS`` and the coalesced request's delayed
re-check runs the sync. The worker is on a broker namespace of its own (``isolated_worker``),
so no other test's worker takes part.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from sqlalchemy import select

from models import SyncRun
from tests.support import processes
from tests.support.sync import arrange_demo
from workers.sync.coalescing import RECHECK_AFTER_SECONDS, SYNC_LEASE_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]
SYNC = "pagerduty.sync_connection"


def _lease(r: redis.Redis, prefix: str, cid: object) -> bytes | None:
    value = r.get(f"{prefix}lock:sync:{cid}")
    return value if isinstance(value, bytes) else None


def test_sync_now_after_the_holder_was_killed_is_served_within_a_lease(session, sim) -> None:
    demo = arrange_demo(session, sim)
    cid = demo.connection_id
    sim.control.post(
        "/faults", json={"kind": "latency", "path_prefix": "/users", "latency_ms": 3000}
    ).raise_for_status()
    r = redis.Redis.from_url(os.environ["RRPD_BROKER_URL"])
    with processes.isolated_worker(queues="interactive,sync", concurrency=2) as (_proc, client):
        prefix = client.conf.broker_transport_options["global_keyprefix"]  # type: ignore[attr-defined]
        client.send_task(SYNC, kwargs={"connection_id": str(cid), "kind": "manual"})  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while (held := _lease(r, prefix, cid)) is None:
            assert time.monotonic() < deadline, "the sync never took its lease"
            time.sleep(0.05)
        holder_pid = int(held.decode().split("|")[1].rsplit(":", 1)[1])
        time.sleep(0.5)  # inside the slow /users read
        os.kill(holder_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sim.control.delete("/faults").raise_for_status()
        assert _lease(r, prefix, cid) is not None  # the dead holder's lease is still there

        # "Sync now": coalesced into the dead holder's pass, then served by the re-check.
        client.send_task(SYNC, kwargs={"connection_id": str(cid), "kind": "manual"})  # type: ignore[attr-defined]
        limit = SYNC_LEASE_SECONDS + RECHECK_AFTER_SECONDS + 10
        while True:
            session.expire_all()
            done = session.scalars(
                select(SyncRun).where(SyncRun.connection_id == cid, SyncRun.status == "succeeded")
            ).all()
            if done:
                break
            assert time.monotonic() - killed_at < limit, (
                f"no sync served within {limit:.0f} s of the kill"
            )
            time.sleep(0.25)
        served_after = time.monotonic() - killed_at
    assert served_after < limit < 200
    print(f"served {served_after:.1f} s after the kill")

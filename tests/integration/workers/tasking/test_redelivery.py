"""A worker node killed mid-task: its message runs again within seconds, not 20 minutes.

Redis gives an unacknowledged message to another consumer only after the visibility timeout
(1,200 s). The node that comes back (same node name) returns what its previous life held a few
seconds after it starts; a node that does not come back is taken over by the others once its
heartbeat lapses (``RRPD_WORKER_HEARTBEAT_SECONDS``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from models import PagerDutyConnection, Rotation, RotationMode, utcnow
from tests.support import factories, processes
from tests.support.deployment import Deployment, deployment
from tests.support.locks import waiting_on_a_lock

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


def _arrange(dep: Deployment) -> tuple[uuid.UUID, uuid.UUID]:
    with dep.session() as s:
        ws = factories.workspace(s)
        alice = factories.member(s, ws)
        conn = factories.api_key_connection(s, ws)
        rot = factories.rotation(s, ws, [alice])
        rot.mode, rot.pagerduty_schedule_id, rot.bound_at = (
            RotationMode.PAGERDUTY,
            "PSCHED1",
            utcnow(),
        )
        s.commit()
        return conn.id, rot.id


@contextmanager
def _connection_locked(dep: Deployment, cid: uuid.UUID) -> Iterator[None]:
    holder = dep.session()
    holder.execute(
        select(PagerDutyConnection.id).where(PagerDutyConnection.id == cid).with_for_update()
    )
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def _kill_mid_disconnect(dep: Deployment, victim_name: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    cid, rid = _arrange(dep)
    victim = dep.worker("interactive", name=victim_name)
    dep.wait_for_worker(victim)
    task_id = str(uuid.uuid4())
    with _connection_locked(dep, cid):
        dep.celery().send_task(
            "pagerduty.disconnect", kwargs={"connection_id": str(cid)}, task_id=task_id
        )
        assert waiting_on_a_lock(timeout=30, engine=dep.engine), "the disconnect never started"
        processes.kill_hard(victim)
    with dep.session() as s:
        assert s.get(PagerDutyConnection, cid).status == "connected"  # rolled back
    return cid, rid, task_id


def _wait_disconnected(dep: Deployment, cid: uuid.UUID, rid: uuid.UUID, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with dep.session() as s:
            if s.get(PagerDutyConnection, cid).status == "disconnected":
                assert s.get(Rotation, rid).mode == "manual"
                return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not disconnected within {timeout:.0f} s")


def test_a_worker_that_comes_back_runs_what_it_held_within_seconds() -> None:
    with deployment() as dep:
        cid, rid, task_id = _kill_mid_disconnect(dep, "rrpd-interactive@victim")
        back = time.monotonic()
        dep.worker("interactive", name="rrpd-interactive@victim")
        waited = _wait_disconnected(dep, cid, rid, timeout=45)
        result = dep.celery().AsyncResult(task_id).get(timeout=10)
        assert result["status"] == "disconnected"
        # The worker's own start-up (imports, pool, broker) takes a few seconds of that.
        assert time.monotonic() - back < 30, waited
        print(f"disconnect completed {waited:.1f} s after the worker was started again")


def test_a_worker_that_does_not_come_back_is_taken_over_by_the_others() -> None:
    with deployment(RRPD_WORKER_HEARTBEAT_SECONDS="6") as dep:
        survivor = dep.worker("interactive", name="rrpd-interactive@survivor")
        dep.wait_for_worker(survivor)
        # Only the victim may take the task: the survivor starts consuming after the kill.
        processes.stop(survivor)
        dep.stack.close()
        cid, rid, _task_id = _kill_mid_disconnect(dep, "rrpd-interactive@victim")
        dep.worker("interactive", name="rrpd-interactive@survivor")
        # heartbeat (6 s) + the survivor's own steadiness (6 s) + its start-up.
        waited = _wait_disconnected(dep, cid, rid, timeout=45)
        print(f"taken over after {waited:.1f} s")

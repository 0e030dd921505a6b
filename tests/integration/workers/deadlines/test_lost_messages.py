"""A task message lost after its publish, with real workers: the database drives the work again.

Each test publishes the task (the outbox row is marked published), then empties its Redis queue
before any worker consumes it (tests/support/lost_messages.py): what a worker SIGKILLed between
kombu's pop and its bookkeeping leaves. The ``deadlines`` loop of the live workers must notice
it from the connection's deadline alone: a disconnect completes within 30 s, a validation ends
within 60 s, a "sync now" still produces its manual sync run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import (
    OutboxMessage,
    PagerDutyConnection,
    Role,
    Rotation,
    RotationMode,
    SyncRun,
    utcnow,
)
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.connections import pending_oauth_login
from tests.support.lost_messages import consumer_paused, lose_published
from tests.support.stack import demo_api_key
from tests.support.sync import arrange_demo
from workers.connections.setup import set_api_key
from workers.core.access import Actor
from workers.core.db import transaction
from workers.disconnect.request import request_disconnect
from workers.sync.request import sync_now
from workers.tasking.contract import EXCHANGE_OAUTH_CODE
from workers.tasking.enqueue import enqueue

pytestmark = pytest.mark.integration


def _wait(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds (fails after ``timeout``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not done in time"
        time.sleep(0.2)
    return time.monotonic() - start


def _conn(session: Session, cid) -> PagerDutyConnection:  # type: ignore[no-untyped-def]
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, cid)
    assert conn is not None
    return conn


def _published(session: Session, name: str) -> bool:
    session.rollback()
    return bool(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.name == name, OutboxMessage.published_at.is_not(None))
        )
    )


def test_a_lost_disconnect_completes_within_30_seconds(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    demo = arrange_demo(session, sim)
    actor = Actor(demo.workspace_id, demo.members["alice"], Role.ADMIN)
    with consumer_paused("interactive"):
        with transaction() as s:
            request_disconnect(s, actor)
        assert lose_published("interactive") == 1
        lost_at = time.monotonic()
        assert _published(session, "pagerduty.disconnect")  # the outbox says it was sent
    assert _conn(session, demo.connection_id).status == "disconnecting"

    took = _wait(lambda: _conn(session, demo.connection_id).status == "disconnected", 30)
    print(f"lost disconnect done {time.monotonic() - lost_at:.1f} s after the loss")
    assert took <= 30
    session.rollback()
    bound = session.scalar(
        select(func.count())
        .select_from(Rotation)
        .where(Rotation.workspace_id == demo.workspace_id, Rotation.mode == RotationMode.PAGERDUTY)
    )
    assert bound == 0  # every rotation Manual
    conn = _conn(session, demo.connection_id)
    assert (conn.drive_at, conn.drives) == (None, 0)


def test_a_lost_validation_ends_connected_within_60_seconds(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    session.commit()
    actor = Actor(ws.id, admin.id, Role.ADMIN)
    with consumer_paused("interactive"):
        with transaction() as s:
            cid = set_api_key(s, actor, demo_api_key(sim)).connection.id
        assert lose_published("interactive") == 1
        lost_at = time.monotonic()
    assert _conn(session, cid).status == "validating"

    took = _wait(lambda: _conn(session, cid).status != "validating", 60)
    print(f"lost validation ended {time.monotonic() - lost_at:.1f} s after the loss")
    conn = _conn(session, cid)
    assert conn.status == "connected"  # the key is valid: driven again, not given up
    assert conn.drives >= 0
    assert took <= 60


def test_a_lost_code_exchange_is_driven_again_while_the_code_lives(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    # What the callback commits: the login holding its code, the connection validating with
    # its deadline, the exchange task (lost here).
    conn, auth = pending_oauth_login(session, sim)
    with consumer_paused("interactive"):
        with transaction() as s:
            stored = s.get(PagerDutyConnection, conn.id)
            assert stored is not None
            stored.expect_work(utcnow())
            enqueue(
                s, EXCHANGE_OAUTH_CODE, workspace_id=conn.workspace_id, authorization_id=auth.id
            )
        assert lose_published("interactive") == 1
        lost_at = time.monotonic()

    took = _wait(lambda: _conn(session, conn.id).status != "validating", 60)
    print(f"lost code exchange ended {time.monotonic() - lost_at:.1f} s after the loss")
    # PagerDuty's code lives 30 s: the first drive (8 s) uses it in time.
    assert _conn(session, conn.id).status == "connected"
    assert took <= 60


def test_a_lost_sync_now_still_produces_its_manual_run(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    demo = arrange_demo(session, sim)
    actor = Actor(demo.workspace_id, demo.members["alice"], Role.ADMIN)

    def manual_runs() -> int:
        session.rollback()
        return int(
            session.scalar(
                select(func.count())
                .select_from(SyncRun)
                .where(SyncRun.connection_id == demo.connection_id, SyncRun.kind == "manual")
            )
            or 0
        )

    with consumer_paused("sync"):
        with transaction() as s:
            sync_now(s, actor)
        assert lose_published("sync") == 1
        lost_at = time.monotonic()
    assert _conn(session, demo.connection_id).sync_requested_at is not None

    _wait(lambda: manual_runs() >= 1, 60)
    print(f"lost sync now ran {time.monotonic() - lost_at:.1f} s after the loss")
    _wait(lambda: _conn(session, demo.connection_id).sync_requested_at is None, 10)
    conn = _conn(session, demo.connection_id)
    assert conn.drive_at is None
    run = session.execute(
        select(SyncRun).where(SyncRun.connection_id == demo.connection_id, SyncRun.kind == "manual")
    ).scalar_one()
    assert run.status == "succeeded"

"""Slow is not lost: tasks push their connection's deadline forward while they may still run,
and a "sync now" is answered by the recorded run of a pass that started after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, utcnow
from models.connection import SYNC_NOW_AFTER
from tests.support import factories
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.outbox import paused_outbox
from tests.support.sync import arrange_demo
from workers.connections import activation
from workers.core.db import transaction
from workers.sync import run
from workers.sync.request import enqueue_manual_sync

pytestmark = pytest.mark.both_databases


@pytest.fixture
def fake(db: str) -> Iterator[InProcessPagerDuty]:
    with paused_outbox(), InProcessPagerDuty() as pagerduty:
        yield pagerduty


def _reload(session: Session, cid) -> PagerDutyConnection:  # type: ignore[no-untyped-def]
    session.expire_all()
    conn = session.get(PagerDutyConnection, cid)
    assert conn is not None
    return conn


def test_a_validation_pushes_its_deadline_when_it_starts_and_before_a_retry(
    session: Session, fake: InProcessPagerDuty
) -> None:
    conn = factories.api_key_connection(
        session,
        factories.workspace(session),
        api_key=fake.api_key(),
        status=ConnectionStatus.VALIDATING,
    )
    conn.expect_work(utcnow())
    session.commit()
    seen: list[object] = []

    def factory(base_url, credential, **kw):  # type: ignore[no-untyped-def]
        seen.append(_reload(session, conn.id).drive_at)
        return fake.reader_factory(base_url, credential, **kw)

    before = utcnow()
    assert activation.validate_api_key(
        conn.id, conn.generation, client_factory=factory
    ).outcome == ("connected")
    # While it talked to PagerDuty, its deadline was its hard time limit away.
    assert seen[0] >= before + timedelta(seconds=activation.VALIDATION_RUNNING_SECONDS - 1)
    assert _reload(session, conn.id).drive_at is None  # connected: nothing pending

    other = factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.VALIDATING
    )
    session.commit()
    activation.expect_retry(other.id, other.generation, 30)
    pushed = _reload(session, other.id).drive_at
    assert pushed is not None
    assert pushed >= before + timedelta(seconds=30 + activation.VALIDATION_RUNNING_SECONDS - 1)


def test_a_sync_now_is_answered_only_by_a_pass_that_started_after_it(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    early = utcnow() - timedelta(seconds=5)  # a pass whose fetch began before the request
    with transaction() as s:
        conn = s.get(PagerDutyConnection, demo.connection_id)
        assert conn is not None
        enqueue_manual_sync(s, conn, actor="operator")
    stored = _reload(session, demo.connection_id)
    requested = stored.sync_requested_at
    assert requested is not None
    assert stored.drive_at == requested + timedelta(seconds=SYNC_NOW_AFTER)

    assert (
        run.sync_once(
            demo.connection_id, client_factory=fake.sync_factory, now=lambda: early
        ).status
        == "succeeded"
    )
    assert _reload(session, demo.connection_id).sync_requested_at == requested  # not answered

    result = run.sync_once(demo.connection_id, kind="scheduled", client_factory=fake.sync_factory)
    assert result.status == "succeeded"
    stored = _reload(session, demo.connection_id)
    assert (stored.sync_requested_at, stored.drive_at, stored.drives) == (None, None, 0)


def test_a_pass_answering_a_sync_now_pushes_its_deadline_while_it_reads(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    with transaction() as s:
        conn = s.get(PagerDutyConnection, demo.connection_id)
        assert conn is not None
        enqueue_manual_sync(s, conn, actor="operator")
    requested = _reload(session, demo.connection_id).sync_requested_at
    assert requested is not None
    seen: list[object] = []

    def factory(cred):  # type: ignore[no-untyped-def]
        seen.append(_reload(session, demo.connection_id).drive_at)
        return fake.sync_factory(cred)

    before = utcnow()
    assert run.sync_once(demo.connection_id, client_factory=factory).status == "succeeded"
    # While it read PagerDuty, the deadlines loop would not drive the request again: its
    # deadline was the pass's hard time limit away, not SYNC_NOW_AFTER from the request.
    assert seen[0] >= before + timedelta(seconds=run.SYNC_RUNNING_SECONDS - 1)
    stored = _reload(session, demo.connection_id)
    assert (stored.sync_requested_at, stored.drive_at, stored.drives) == (None, None, 0)

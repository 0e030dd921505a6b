"""The ``deadlines`` loop's claim: every state that waits for a task is driven again past its
deadline, once per deadline, with a capped backoff; a validation ends within a minute.

Deadlines are an hour ahead of the real clock and rounds are given their ``now``: the deadlines
loops of any live workers in this test process see nothing due, so these tests alone drive.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    Role,
    Workspace,
    utcnow,
)
from models.connection import PENDING_WORK_AFTER, SYNC_NOW_AFTER
from tests.support import factories
from tests.support.outbox import as_flat, committed, paused_outbox
from workers.connections import messages
from workers.core.audit import audit
from workers.deadlines.drive import MAX_VALIDATION_DRIVES, backoff, run_round
from workers.deadlines.views import past_deadline_clause

pytestmark = pytest.mark.both_databases

V = ConnectionStatus


@pytest.fixture
def later() -> datetime:
    return utcnow() + timedelta(hours=1)


@pytest.fixture
def paused(db: str) -> Iterator[None]:
    with paused_outbox():
        yield


def _conn(session: Session, status: ConnectionStatus, at: datetime) -> PagerDutyConnection:
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, status=status)
    conn.expect_work(at)
    return conn


def _tasks() -> list[dict[str, object]]:
    return [as_flat(row) for row in committed()]


def _reload(session: Session, conn: PagerDutyConnection) -> PagerDutyConnection:
    session.expire_all()
    found = session.get(PagerDutyConnection, conn.id)
    assert found is not None
    return found


def test_entering_a_waiting_state_sets_the_deadline_and_leaving_clears_it(
    session: Session,
) -> None:
    conn = factories.api_key_connection(session, factories.workspace(session))
    conn.transition(V.VALIDATING)
    assert conn.drive_at == conn.status_changed_at + timedelta(
        seconds=PENDING_WORK_AFTER[V.VALIDATING]
    )
    conn.drives = 2
    conn.transition(V.CONNECTED)
    assert (conn.drive_at, conn.drives) == (None, 0)
    conn.sync_requested_at = utcnow()
    conn.transition(V.DISCONNECTING)
    assert conn.sync_requested_at is None
    assert conn.drive_at is not None


def test_a_round_drives_each_waiting_state_with_its_own_task(
    session: Session, paused: None, later: datetime
) -> None:
    validating = _conn(session, V.VALIDATING, later)
    disconnecting = _conn(session, V.DISCONNECTING, later)
    ws = session.get(Workspace, disconnecting.workspace_id)
    assert ws is not None
    requester = factories.member(session, ws, role=Role.ADMIN)
    audit(
        session,
        requester.workspace_id,
        AuditAction.DISCONNECT_REQUESTED,
        actor_member_id=requester.id,
    )
    syncing = _conn(session, V.CONNECTED, later)
    syncing.sync_requested_at = later
    syncing.expect_work(later, SYNC_NOW_AFTER)
    not_yet = _conn(session, V.VALIDATING, later + timedelta(minutes=5))
    idle = factories.api_key_connection(session, factories.workspace(session))
    session.commit()

    now = later + timedelta(seconds=SYNC_NOW_AFTER)
    result = run_round(now)

    assert result.driven == {"validating": 1, "disconnecting": 1, "connected": 1}
    assert sorted(_tasks(), key=lambda t: str(t["name"])) == [
        {
            "name": "pagerduty.disconnect",
            "connection_id": str(disconnecting.id),
            "actor_member_id": str(requester.id),
        },
        {"name": "pagerduty.sync_connection", "connection_id": str(syncing.id), "kind": "manual"},
        {
            "name": "pagerduty.validate_api_key",
            "connection_id": str(validating.id),
            "generation": validating.generation,
        },
    ]
    for conn, status in ((validating, V.VALIDATING), (disconnecting, V.DISCONNECTING)):
        stored = _reload(session, conn)
        assert stored.drives == 1
        assert stored.drive_at == now + timedelta(seconds=backoff(status, 1))
    assert _reload(session, not_yet).drives == 0
    assert _reload(session, idle).drive_at is None
    # Driven once for this deadline: the next round at the same instant finds nothing.
    assert run_round(now).claimed == 0
    assert len(_tasks()) == 3


def test_a_validation_whose_every_message_is_lost_ends_within_a_minute(
    session: Session, paused: None, later: datetime
) -> None:
    conn = _conn(session, V.VALIDATING, later)
    session.commit()
    now = later
    while True:
        stored = _reload(session, conn)
        if stored.status != V.VALIDATING:
            break
        assert stored.drive_at is not None
        now = stored.drive_at
        run_round(now)
    assert now - later <= timedelta(seconds=60)
    assert stored.status == V.INVALID
    assert stored.last_error == messages.CHECK_LOST
    assert "PagerDuty" not in messages.CHECK_LOST  # nothing blames PagerDuty
    assert stored.drive_at is None
    assert len(_tasks()) == MAX_VALIDATION_DRIVES
    session.expire_all()
    assert session.query(PagerDutyConnection).filter(past_deadline_clause(now)).count() == 0


def test_a_disconnect_is_driven_until_done_with_a_capped_backoff(
    session: Session, paused: None, later: datetime
) -> None:
    conn = _conn(session, V.DISCONNECTING, later)
    session.commit()
    gaps = []
    for _ in range(8):
        stored = _reload(session, conn)
        assert stored.drive_at is not None
        before = stored.drive_at
        run_round(before)
        after = _reload(session, conn).drive_at
        assert after is not None
        gaps.append((after - before).total_seconds())
    assert gaps == [5, 10, 20, 30, 30, 30, 30, 30]
    assert _reload(session, conn).status == V.DISCONNECTING
    assert len(_tasks()) == 8


def test_an_oauth_validation_exchanges_again_while_the_login_holds_its_code(
    session: Session, paused: None, later: datetime
) -> None:
    conn = _conn(session, V.VALIDATING, later)
    conn.auth_method = AuthMethod.OAUTH
    auth = OAuthAuthorization(
        id=uuid.uuid4(),
        workspace_id=conn.workspace_id,
        connection_id=conn.id,
        state_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        code_verifier="verifier",
        client_id="client",
        client_secret="secret",
        region="us",
        code="the-code",
        expires_at=later,
        code_received_at=later - timedelta(seconds=1),
    )
    session.add(auth)
    session.commit()

    run_round(later + timedelta(seconds=PENDING_WORK_AFTER[V.VALIDATING]))
    assert _tasks() == [{"name": "pagerduty.exchange_oauth_code", "authorization_id": str(auth.id)}]

    # A delivery took the code and outlived its time limit: it died; the code is spent.
    auth.code = None
    session.commit()
    stored = _reload(session, conn)
    assert stored.drive_at is not None
    run_round(stored.drive_at)
    stored = _reload(session, conn)
    assert stored.status == V.INVALID
    assert stored.last_error == messages.CODE_REFUSED
    assert len(_tasks()) == 1


def test_a_stale_deadline_is_cleared_without_a_task(
    session: Session, paused: None, later: datetime
) -> None:
    conn = _conn(session, V.CONNECTED, later)  # no sync requested: nothing waits
    session.commit()
    assert run_round(later + timedelta(seconds=SYNC_NOW_AFTER)).cleared == 1
    assert _reload(session, conn).drive_at is None
    assert _tasks() == []


@pytest.mark.postgres_only
def test_two_nodes_claiming_at_once_drive_each_overdue_row_once(
    session: Session, paused: None, later: datetime
) -> None:
    rows = [_conn(session, V.DISCONNECTING, later) for _ in range(40)]
    session.commit()
    now = later + timedelta(seconds=PENDING_WORK_AFTER[V.DISCONNECTING])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def node() -> None:
        try:
            start.wait()
            while run_round(now, batch=3).claimed:
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    driven = sorted(str(t["connection_id"]) for t in _tasks())
    assert driven == sorted(str(r.id) for r in rows)
    assert {_reload(session, r).drives for r in rows} == {1}

"""A new API key over a connected connection (workers/connections/pending.py): checked beside
the live key against the in-process PagerDuty, which keeps serving until the new key is proven."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuditEvent, ConnectionStatus, PagerDutyConnection, Role, utcnow
from tests.support import factories
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.outbox import CommittedTasks, as_flat, paused_outbox
from workers.connections import activation, messages, pending, setup, status
from workers.core.access import Actor, Missing
from workers.core.db import transaction
from workers.deadlines.drive import MAX_VALIDATION_DRIVES, run_round
from workers.events import transition
from workers.sync.request import sync_now

pytestmark = pytest.mark.both_databases

WRONG_KEY = "u+thisKeyDoesNotExist1"


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    with paused_outbox():
        yield CommittedTasks(as_flat)


def _connected(session: Session, key: str) -> tuple[PagerDutyConnection, Actor]:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    conn = factories.api_key_connection(session, ws, api_key=key, by=admin)
    conn.pagerduty_subdomain = "acme"
    session.commit()
    return conn, Actor(ws.id, admin.id, Role.ADMIN)


def _replace(actor: Actor, key: str) -> int:
    """PUT .../api-key: returns the generation its check runs under."""
    with transaction() as s:
        done = setup.set_api_key(s, actor, key, "us")
        assert done.connection.status == "connected"
        assert done.connection.pending_generation is not None
        return done.connection.pending_generation


def _reload(session: Session, conn: PagerDutyConnection) -> PagerDutyConnection:
    session.expire_all()
    again = session.get(PagerDutyConnection, conn.id)
    assert again is not None
    return again


def test_a_new_key_over_a_connected_connection_waits_beside_the_live_one(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    old = fake.api_key()
    conn, actor = _connected(session, old)
    generation = _replace(actor, WRONG_KEY)

    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pending_api_key == WRONG_KEY  # encrypted in the row (EncryptedText)
    assert generation == 2
    assert list(published) == [
        {
            "name": "pagerduty.validate_api_key",
            "connection_id": str(conn.id),
            "generation": 2,
        }
    ]
    doc = status.connection_status(session, conn.workspace_id)
    assert doc.status == "connected"
    assert doc.pending is not None
    assert doc.pending.status == "checking"
    assert doc.pending.message == messages.PENDING_CHECKING
    # Syncs go on meanwhile: "sync now" is accepted.
    with transaction() as s:
        sync_now(s, actor)


def test_a_rejected_new_key_leaves_the_connection_as_it_was(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    old = fake.api_key()
    conn, actor = _connected(session, old)
    generation = _replace(actor, WRONG_KEY)

    result = activation.validate_api_key(conn.id, generation, client_factory=fake.reader_factory)

    assert result.outcome == "pending_rejected"
    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.last_error is None
    assert conn.pending_api_key is None  # of no use any more
    pending = status.connection_status(session, conn.workspace_id).pending
    assert pending is not None
    assert pending.status == "rejected"
    assert pending.message.startswith(
        "The new key was rejected; Round Robin still uses the previous one."
    )
    assert "PagerDuty rejected this API key" in pending.message
    assert [m["name"] for m in published] == ["pagerduty.validate_api_key"]  # no sync
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at)).all()
    assert actions[-1] == "pagerduty.pending.rejected"
    # A second delivery of the same check changes nothing.
    again = activation.validate_api_key(conn.id, generation, client_factory=fake.reader_factory)
    assert again.outcome == "stale"


def test_a_proven_new_key_replaces_the_live_one_and_syncs(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    conn, actor = _connected(session, fake.api_key())
    new = fake.api_key("demo-alice-user")  # the same account (acme)
    generation = _replace(actor, new)

    result = activation.validate_api_key(conn.id, generation, client_factory=fake.reader_factory)

    assert result.outcome == "pending_accepted"
    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 2, new)
    assert conn.key_level == "user"
    assert conn.pagerduty_subdomain == "acme"
    assert conn.pending_status is None
    assert conn.pending_api_key is None
    assert status.connection_status(session, conn.workspace_id).pending is None
    assert [m["name"] for m in published] == [
        "pagerduty.validate_api_key",
        "pagerduty.sync_connection",
    ]


def test_a_superseded_new_key_is_never_swapped_in(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    conn, actor = _connected(session, fake.api_key())
    first = _replace(actor, fake.api_key("demo-alice-user"))
    second = _replace(actor, WRONG_KEY)
    assert second == first + 1

    late = activation.validate_api_key(conn.id, first, client_factory=fake.reader_factory)
    assert late.outcome == "stale"
    assert _reload(session, conn).generation == 1
    assert (
        activation.validate_api_key(conn.id, second, client_factory=fake.reader_factory).outcome
        == "pending_rejected"
    )


def test_a_pending_check_whose_messages_are_lost_is_driven_then_ends_lost(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    old = fake.api_key()
    conn, actor = _connected(session, old)
    generation = _replace(actor, fake.api_key("demo-alice-user"))

    now = utcnow()
    for drive in range(1, MAX_VALIDATION_DRIVES + 1):
        now += timedelta(minutes=1)
        assert run_round(now).driven == {"pending": 1}
        assert published[-1] == {
            "name": "pagerduty.validate_api_key",
            "connection_id": str(conn.id),
            "generation": generation,
        }
        assert _reload(session, conn).pending_drives == drive
    now += timedelta(minutes=1)
    assert run_round(now).ended_invalid == 1

    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pending_status == "lost"
    assert conn.pending_drive_at is None
    assert conn.pending_api_key is None
    assert conn.pending_message.startswith(messages.PENDING_LOST)
    assert run_round(now + timedelta(minutes=5)).claimed == 0


def test_over_a_broken_connection_a_new_key_replaces_directly(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    conn, actor = _connected(session, fake.api_key())
    generation = _replace(actor, WRONG_KEY)
    with transaction() as s:
        live = s.get(PagerDutyConnection, conn.id)
        assert live is not None
        transition(s, live, ConnectionStatus.INVALID, error="PagerDuty rejected this API key")
    conn = _reload(session, conn)
    assert conn.pending_status is None
    assert conn.pending_api_key is None

    with transaction() as s:
        done = setup.set_api_key(s, actor, fake.api_key("demo-alice-user"), "us")
        assert done.connection.status == "validating"
        # Above the dropped pending check's generation: its late outcome is never this one's.
        assert done.connection.generation == generation + 1


def test_a_key_of_another_account_is_never_swapped_in(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    old = fake.api_key()
    conn, actor = _connected(session, old)  # acme
    generation = _replace(actor, fake.api_key("euco-readonly"))

    result = activation.validate_api_key(conn.id, generation, client_factory=fake.reader_factory)

    assert result.outcome == "pending_account_change"
    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pagerduty_subdomain == "acme"
    assert conn.pending_status == "account_change"
    # Kept (encrypted) for the admin's confirmation (test_account_change.py).
    assert conn.pending_api_key == fake.api_key("euco-readonly")
    assert conn.pending_drive_at is None  # it waits for the admin, not for a task
    assert "another PagerDuty account (euco.pagerduty.com)" in conn.pending_message
    assert [m["name"] for m in published] == ["pagerduty.validate_api_key"]  # no sync


def test_discarding_the_pending_credential_leaves_the_connection_as_it_was(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    old = fake.api_key()
    conn, actor = _connected(session, old)
    generation = _replace(actor, fake.api_key("demo-alice-user"))
    with transaction() as s:
        pending.discard(s, actor)

    conn = _reload(session, conn)
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pending_status is None
    assert conn.pending_api_key is None
    # Its check, still in flight, finds nothing to check.
    late = activation.validate_api_key(conn.id, generation, client_factory=fake.reader_factory)
    assert late.outcome == "stale"
    with pytest.raises(Missing), transaction() as s:
        pending.discard(s, actor)

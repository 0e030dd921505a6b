from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    ALLOWED_TRANSITIONS,
    ConnectionStatus,
    InvalidTransition,
    Member,
    Rotation,
    RotationMode,
    utcnow,
)
from models.base import UTCDateTime
from tests.support import factories


def test_one_live_connection_per_workspace(session: Session) -> None:
    ws = factories.workspace(session)
    factories.api_key_connection(session, ws)
    with pytest.raises(IntegrityError):
        factories.api_key_connection(session, ws, status=ConnectionStatus.VALIDATING)
    session.rollback()


def test_disconnected_connections_do_not_block_a_new_one(session: Session) -> None:
    ws = factories.workspace(session)
    factories.api_key_connection(session, ws, status=ConnectionStatus.DISCONNECTED)
    factories.api_key_connection(session, ws, status=ConnectionStatus.DISCONNECTED)
    live = factories.api_key_connection(session, ws)
    session.commit()
    assert live.is_live


def test_rotation_mode_must_match_binding(session: Session) -> None:
    ws = factories.workspace(session)
    session.add(Rotation(workspace_id=ws.id, name="bad", mode=RotationMode.PAGERDUTY))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    ws = factories.workspace(session)
    session.add(
        Rotation(workspace_id=ws.id, name="bad2", mode="manual", pagerduty_schedule_id="PABC")
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_member_email_unique_case_insensitively_within_workspace(session: Session) -> None:
    ws = factories.workspace(session)
    m = factories.member(session, ws, email="  Alice@Example.com ")
    assert m.email_key == "alice@example.com"
    assert m.email == "Alice@Example.com"
    session.add(Member(workspace_id=ws.id, email="alice@EXAMPLE.com", display_name="A2"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_make_manual_keeps_members(session: Session) -> None:
    ws = factories.workspace(session)
    people = [factories.member(session, ws) for _ in range(2)]
    r = factories.rotation(session, ws, people)
    r.mode, r.pagerduty_schedule_id = "pagerduty", "PSCHED1"
    session.flush()
    r.make_manual()
    session.commit()
    session.refresh(r)
    assert (r.mode, r.pagerduty_schedule_id) == ("manual", None)
    assert [rm.member_id for rm in r.members] == [p.id for p in people]


def test_status_transitions_follow_the_table(session: Session) -> None:
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, status=ConnectionStatus.VALIDATING)
    conn.transition(ConnectionStatus.INVALID, error="PagerDuty rejected this API key")
    assert conn.last_error == "PagerDuty rejected this API key"
    conn.transition(ConnectionStatus.VALIDATING)
    conn.transition(ConnectionStatus.CONNECTED)
    assert conn.last_error is None
    conn.transition(ConnectionStatus.DISCONNECTING)
    conn.transition(ConnectionStatus.DISCONNECTED)
    with pytest.raises(InvalidTransition):
        conn.transition(ConnectionStatus.CONNECTED)
    assert ALLOWED_TRANSITIONS[ConnectionStatus.DISCONNECTED] == frozenset()
    # Every status is reachable from validating, except by way of disconnecting.
    assert set(ConnectionStatus) == {ConnectionStatus.VALIDATING} | set().union(
        *ALLOWED_TRANSITIONS.values()
    )


@pytest.mark.parametrize(
    ("status", "kind"), [("running", "scheduled"), ("succeeded", "nightly"), ("done", "manual")]
)
def test_a_sync_run_holds_only_its_enums_values(session: Session, status: str, kind: str) -> None:
    """The database refuses what the enums do not name, even written around the ORM (no row
    says ``running``: a run is written once, when it ends)."""
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws)
    session.flush()
    insert = text(
        "INSERT INTO sync_runs (id, connection_id, generation, kind, status, started_at,"
        " rows_created, rows_updated, rows_deleted, requests_made)"
        " VALUES (:id, :cid, 1, :kind, :status, :at, 0, 0, 0, 0)"
    ).bindparams(
        bindparam("id", type_=Uuid()),
        bindparam("cid", type_=Uuid()),
        bindparam("at", type_=UTCDateTime()),
    )
    values = {"cid": conn.id, "at": utcnow()}
    session.execute(insert, {**values, "id": uuid.uuid4(), "kind": "scheduled", "status": "failed"})
    with pytest.raises(IntegrityError):
        session.execute(insert, {**values, "id": uuid.uuid4(), "kind": kind, "status": status})
    session.rollback()

"""Rotation views: one rotation's view reads that rotation only, and a workspace's list reads
its rotations' people in a fixed number of statements, however many rotations it has."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from models import (
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyUser,
    Rotation,
    RotationMember,
    RotationMode,
    RotationOnDuty,
    utcnow,
)
from tests.support import factories
from workers.core.access import Missing
from workers.rotations.views import (
    BoundScheduleOut,
    UnmatchedOut,
    list_rotations,
    rotation_view,
)

pytestmark = pytest.mark.both_databases

ROTATIONS = 50


@dataclass
class Workspace50:
    workspace_id: uuid.UUID
    rotation_ids: list[uuid.UUID]


def _fifty_bound_rotations(session: Session) -> Workspace50:
    """50 rotations, each bound to its own mirrored schedule, with two members (the first on
    duty) and one person on call whom no member matches."""
    ws = factories.workspace(session, "Fifty")
    conn = factories.api_key_connection(session, ws)
    conn.directory_read_at = utcnow()
    ids = []
    for n in range(ROTATIONS):
        first = factories.member(session, ws, display_name=f"First {n:02}")
        second = factories.member(session, ws, display_name=f"Second {n:02}")
        rot = factories.rotation(session, ws, [first, second], name=f"Rotation {n:02}")
        rot.mode = RotationMode.PAGERDUTY
        rot.pagerduty_schedule_id = f"PS{n:05}"
        rot.bound_at = utcnow()
        session.add_all(
            [
                RotationOnDuty(rotation_id=rot.id, member_id=first.id),
                PagerDutySchedule(
                    connection_id=conn.id, pagerduty_id=f"PS{n:05}", name=f"Schedule {n:02}"
                ),
                PagerDutyUser(
                    connection_id=conn.id,
                    pagerduty_id=f"PU{n:05}",
                    name=f"Stranger {n:02}",
                    email=f"stranger{n}@example.com",
                ),
                PagerDutyOnCall(
                    connection_id=conn.id,
                    schedule_pagerduty_id=f"PS{n:05}",
                    user_pagerduty_id=f"PU{n:05}",
                ),
            ]
        )
        ids.append(rot.id)
    session.commit()
    return Workspace50(ws.id, ids)


@contextmanager
def count_statements(session: Session) -> Iterator[list[str]]:
    """Every statement sent through the session's engine while the block runs (the test's
    session has an engine of its own on SQLite, so tests.support.sync's counter misses it)."""
    seen: list[str] = []

    def sent(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split())[:120])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", sent)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", sent)


@contextmanager
def loaded_rows(session: Session) -> Iterator[Counter[str]]:
    """How many rows of each model the session loads while the block runs."""
    seen: Counter[str] = Counter()

    def loaded(_session: Session, instance: object) -> None:
        seen[type(instance).__name__] += 1

    event.listen(session, "loaded_as_persistent", loaded)
    try:
        yield seen
    finally:
        event.remove(session, "loaded_as_persistent", loaded)


def test_one_rotations_view_reads_that_rotation_only(session: Session) -> None:
    ws = _fifty_bound_rotations(session)
    wanted = ws.rotation_ids[37]
    session.expunge_all()  # nothing loaded before the view reads

    with count_statements(session) as statements, loaded_rows(session) as rows:
        view = rotation_view(session, ws.workspace_id, wanted)

    assert view.id == wanted
    assert view.name == "Rotation 37"
    assert [m.name for m in view.members] == ["First 37", "Second 37"]
    assert [m.name for m in view.on_duty] == ["First 37"]
    assert view.schedule == BoundScheduleOut(id="PS00037", name="Schedule 37", missing=False)
    assert view.unmatched_on_call == [
        UnmatchedOut(
            pagerduty_user_id="PU00037",
            name="Stranger 37",
            email="stranger37@example.com",
            active=True,
        )
    ]
    # The other 49 rotations and their people were never read.
    assert (rows[Rotation.__name__], rows[RotationMember.__name__]) == (1, 2)
    # The rotation, its members, its on-duty people, the connection, its schedule's name, its
    # on-call people, its next handoff: one statement each.
    assert len(statements) <= 7, statements
    session.expunge_all()
    assert view == next(r for r in list_rotations(session, ws.workspace_id) if r.id == wanted)


def test_a_workspaces_list_reads_people_in_a_fixed_number_of_statements(
    session: Session,
) -> None:
    ws = _fifty_bound_rotations(session)
    session.expunge_all()

    with count_statements(session) as statements:
        views = list_rotations(session, ws.workspace_id)

    assert [v.id for v in views] == ws.rotation_ids  # by name
    assert all(len(v.members) == 2 and len(v.on_duty) == 1 for v in views)
    # Not two statements (members, on duty) per rotation: 100 more with 50 rotations.
    assert len(statements) <= 7, statements


def test_a_rotation_of_another_workspace_is_missing(session: Session) -> None:
    ws = _fifty_bound_rotations(session)
    other = factories.rotation(session, factories.workspace(session), name="Elsewhere")
    session.commit()

    with pytest.raises(Missing, match=r"This rotation does not exist in this workspace\."):
        rotation_view(session, ws.workspace_id, other.id)

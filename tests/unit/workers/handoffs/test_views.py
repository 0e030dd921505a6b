"""The next handoff as people see it: rotation views (API, panel) and ``rrpd status``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection, utcnow
from tests.support.handoffs import PEOPLE, arrange, snapshot, sync
from workers.handoffs.apply import run_round
from workers.handoffs.views import HandoffPersonOut
from workers.rotations.views import RotationOut, list_rotations

pytestmark = [pytest.mark.postgres_only, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)


def _primary(session: Session, workspace_id) -> RotationOut:  # type: ignore[no-untyped-def]
    session.rollback()
    (view,) = [r for r in list_rotations(session, workspace_id) if r.name == "Primary"]
    return view


def _text(session: Session, workspace_id) -> str | None:  # type: ignore[no-untyped-def]
    nxt = _primary(session, workspace_id).next_handoff
    return None if nxt is None else nxt.text


def test_the_view_names_who_comes_on_duty_next_and_when(session: Session) -> None:
    a = arrange(session)
    shifts = [
        ("ann", T - 60 * M, T + 10 * M),
        ("bob", T + 10 * M, T + 20 * M),
        ("cy", T + 20 * M, None),
    ]
    sync(session, a, snapshot(T, shifts))
    nxt = _primary(session, a.workspace_id).next_handoff
    assert nxt is not None
    assert nxt.at == T + 10 * M
    assert nxt.text == f"Bob from {(T + 10 * M):%H:%M} UTC"
    assert nxt.people == [
        HandoffPersonOut(pagerduty_user_id=PEOPLE["bob"], name="Bob", member_id=a.members["bob"])
    ]
    run_round(now=T + 10 * M)  # once applied, the one after it is next
    assert _text(session, a.workspace_id) == (f"Cy from {(T + 20 * M):%H:%M} UTC")


def test_a_gap_is_shown_as_nobody_and_no_known_handoff_as_null(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M)]))
    assert _text(session, a.workspace_id) == (f"nobody from {(T + 10 * M):%H:%M} UTC")
    sync(session, a, snapshot(T + M, [("ann", T - 60 * M, None)]))
    assert _primary(session, a.workspace_id).next_handoff is None


def test_handoffs_of_an_old_generation_are_not_shown(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]))
    conn = session.get(PagerDutyConnection, a.connection_id)
    assert conn is not None
    conn.generation += 1
    session.commit()
    assert _primary(session, a.workspace_id).next_handoff is None

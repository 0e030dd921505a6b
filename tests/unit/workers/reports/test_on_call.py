"""The on-call history through the real writers (the sync's apply, the handoff loop, unbinding)
and the report over it: a handoff and an override, each person's seconds to the second.

Instants are an hour ahead of the real clock and rounds are given their ``now`` (as in
tests/unit/workers/handoffs/test_apply.py): live workers' handoff loops see nothing due.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import OnDutyInterval, Role, Workspace, utcnow
from tests.support import factories
from tests.support.handoffs import Arranged, arrange, snapshot, sync
from tests.support.sync import count_writes
from workers.core.access import Actor, Denied
from workers.handoffs.apply import run_round
from workers.reports.on_call import BadPeriod, on_call_report

pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)


def _admin(session: Session, a: Arranged) -> Actor:
    ws = session.get(Workspace, a.workspace_id)
    assert ws is not None
    admin = factories.member(session, ws, role=Role.ADMIN)
    session.commit()
    return Actor(a.workspace_id, admin.id, Role.ADMIN)


def _intervals(session: Session, a: Arranged) -> list[tuple[str, object, object, str]]:
    session.rollback()
    rows = session.execute(
        select(OnDutyInterval)
        .where(OnDutyInterval.rotation_id == a.rotation_id)
        .order_by(OnDutyInterval.started_at, OnDutyInterval.name)
    ).scalars()
    return [(r.name, r.started_at, r.ended_at, r.source) for r in rows]


def _seconds(report) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {p.name: (p.split.total, p.shifts) for p in report.people}


def test_a_handoff_then_an_override_each_second_of_the_hour_belongs_to_one_person(
    session: Session,
) -> None:
    a = arrange(session)
    actor = _admin(session, a)
    # Ann until T+10m, then Bob (a planned handoff).
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]))
    run_round(now=T + 10 * M)
    # An override in PagerDuty puts Cy on call from T+20m to T+40m; the sync at T+25m sees it
    # (and plans Bob's return at T+40m, which the loop applies at that instant).
    sync(
        session,
        a,
        snapshot(T + 25 * M, [("cy", T + 20 * M, T + 40 * M), ("bob", T + 40 * M, None)]),
    )
    run_round(now=T + 40 * M)

    assert _intervals(session, a) == [
        ("Ann", T, T + 10 * M, "sync"),
        ("Bob", T + 10 * M, T + 25 * M, "handoff"),
        ("Cy", T + 25 * M, T + 40 * M, "sync"),
        ("Bob", T + 40 * M, None, "handoff"),
    ]
    report = on_call_report(
        session, actor, since=T, until=T + 60 * M, rotation_id=a.rotation_id, now=T + 60 * M
    )
    assert _seconds(report) == {"Bob": (2100, 2), "Ann": (600, 1), "Cy": (900, 1)}
    assert sum(p.split.total for p in report.people) == 3600
    assert [p.name for p in report.people] == ["Bob", "Cy", "Ann"]  # most seconds first
    assert {p.kind for p in report.people} == {"member"}

    # A period that cuts shifts: clipped to it, still adding up.
    part = on_call_report(
        session, actor, since=T + 5 * M, until=T + 30 * M, rotation_id=None, now=T + 60 * M
    )
    assert _seconds(part) == {"Ann": (300, 1), "Bob": (900, 1), "Cy": (300, 1)}


def test_a_sync_in_which_nothing_changed_writes_no_history(session: Session) -> None:
    a = arrange(session)
    shifts = [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]
    sync(session, a, snapshot(T, shifts))
    with count_writes() as writes:
        sync(session, a, snapshot(T + 1 * M, shifts))
    assert [w for w in writes if "on_duty_intervals" in w] == []
    assert len(_intervals(session, a)) == 1


def test_a_pagerduty_user_no_member_matches_is_reported_and_ends_when_unbound(
    session: Session,
) -> None:
    from workers.rotations.binding import unbind_rotation

    a = arrange(session, with_cy=False)  # Cy is a PagerDuty user, not a member
    actor = _admin(session, a)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, None), ("cy", T - 60 * M, None)]))
    report = on_call_report(
        session, actor, since=T, until=T + 30 * M, rotation_id=None, now=T + 30 * M
    )
    cy = next(p for p in report.people if p.kind == "pagerduty_user")
    assert (cy.pagerduty_user_id, cy.name, cy.member_id) == ("PUCY001", "Cy", None)
    assert cy.split.total == 1800

    session.rollback()
    unbind_rotation(session, actor, a.rotation_id)
    session.commit()
    still_open = {name for name, _s, ended, _src in _intervals(session, a) if ended is None}
    assert still_open == {"Ann"}  # the member stays on duty in the Manual rotation


def test_members_are_refused_and_a_backwards_or_overlong_period_is_a_bad_request(
    session: Session,
) -> None:
    a = arrange(session)
    member = Actor(a.workspace_id, a.members["ann"], Role.MEMBER)
    with pytest.raises(Denied):
        on_call_report(session, member, since=None, until=None, rotation_id=None, now=T)
    admin = _admin(session, a)
    with pytest.raises(BadPeriod):
        on_call_report(session, admin, since=T, until=T, rotation_id=None, now=T)
    with pytest.raises(BadPeriod):
        on_call_report(
            session, admin, since=T - timedelta(days=401), until=T, rotation_id=None, now=T
        )
    assert session.execute(select(func.count()).select_from(OnDutyInterval)).scalar_one() == 0


def test_a_disconnect_keeps_members_on_duty_and_ends_the_pagerduty_users(
    session: Session,
) -> None:
    from models import Rotation
    from workers.rotations.manual import revert_to_manual

    a = arrange(session, with_cy=False)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, None), ("cy", T - 60 * M, None)]))
    session.rollback()
    rot = session.get(Rotation, a.rotation_id)
    assert rot is not None
    revert_to_manual(
        session,
        workspace_id=a.workspace_id,
        connection_id=a.connection_id,
        rotations=[rot],
        reason="disconnected",
        occurred_at=T + 5 * M,
    )
    session.commit()
    assert [(name, ended) for name, _s, ended, _src in _intervals(session, a)] == [
        ("Ann", None),
        ("Cy", T + 5 * M),
    ]


def test_a_deleted_members_interval_keeps_their_name_and_ends_at_the_next_write(
    session: Session,
) -> None:
    from sqlalchemy import delete

    from models import Member
    from workers.core.db import transaction

    a = arrange(session)
    actor = _admin(session, a)
    shifts = [("ann", T - 60 * M, T + 30 * M), ("bob", T - 60 * M, None)]
    sync(session, a, snapshot(T, shifts))
    session.rollback()
    # Deleted through our own engine: the foreign keys' ON DELETE act on SQLite too.
    with transaction() as s:
        s.execute(delete(Member).where(Member.id == a.members["ann"]))
    # Ann's PagerDuty user no longer matches a member: from now on she is that user.
    sync(session, a, snapshot(T + 10 * M, shifts))
    report = on_call_report(
        session, actor, since=T, until=T + 20 * M, rotation_id=None, now=T + 20 * M
    )
    assert sorted((p.kind, p.name, p.split.total) for p in report.people) == [
        ("former_member", "Ann", 600),
        ("member", "Bob", 1200),
        ("pagerduty_user", "Ann", 600),
    ]

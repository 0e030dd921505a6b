"""A rotation that follows two schedules (issue 22 item 3): members are the union, on duty is
everyone on call in either, a handoff in one applies at its instant and keeps the other's people
on duty, and a disconnect makes it Manual with no schedule left, in one transaction.

Instants are an hour ahead of the real clock and rounds are given their ``now`` (as
test_apply.py): live workers' handoff loops see nothing due.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    PagerDutyConnection,
    Rotation,
    RotationMember,
    RotationMode,
    RotationSchedule,
    ScheduledHandoff,
    utcnow,
)
from tests.support.handoffs import (
    PEOPLE,
    SID,
    Arranged,
    arrange,
    handoff_events,
    on_call_view,
    on_duty,
    snapshot,
    sync,
)
from tests.support.outbox import committed_events
from workers.disconnect.transaction import disconnect_connection
from workers.handoffs.apply import run_round
from workers.handoffs.bound import set_schedules
from workers.pagerduty.records import Schedule, Shift, Timeline, UserRef
from workers.pagerduty.snapshot import AccountSnapshot
from workers.rotations.views import rotation_view

pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)
SID2 = "PSHAND2"
# The first schedule: Ann until T+10m, then Bob. The second: Cy all along.
FIRST = [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]
SECOND = [("cy", T - 60 * M, None)]


def two_schedules(
    fetched_at: datetime,
    first: list[tuple[str, datetime | None, datetime | None]],
    second: list[tuple[str, datetime | None, datetime | None]],
) -> AccountSnapshot:
    """``SID`` (members Ann, Bob, Cy) with ``first`` on call, and ``SID2`` (member Cy only)
    with ``second``."""
    base = snapshot(fetched_at, first)
    cy = UserRef(PEOPLE["cy"], "Cy")
    timeline = Timeline(
        SID2,
        fetched_at,
        fetched_at + timedelta(hours=6),
        tuple(Shift(SID2, UserRef(PEOPLE[n], n.title()), s, e) for n, s, e in second),
    )
    return AccountSnapshot(
        fetched_at=fetched_at,
        users=base.users,
        users_complete=True,
        schedules=(*base.schedules, Schedule(SID2, "Secondary", "v2", "UTC", members=(cy,))),
        timelines={**base.timelines, SID2: timeline},
        unreadable={},
    )


def bound_to_both(session: Session, *, with_cy: bool = True) -> Arranged:
    a = arrange(session, with_cy=with_cy)
    set_schedules(session, a.rotation_id, [SID, SID2])
    session.commit()
    return a


def members(session: Session, a: Arranged) -> list[str]:
    session.rollback()
    by_id = {mid: n for n, mid in a.members.items()}
    return [
        by_id[mid]
        for mid in session.scalars(
            select(RotationMember.member_id)
            .where(RotationMember.rotation_id == a.rotation_id)
            .order_by(RotationMember.position)
        )
    ]


def test_members_are_the_union_and_on_duty_is_everyone_on_call_in_either(
    session: Session,
) -> None:
    a = bound_to_both(session)
    sync(session, a, two_schedules(T, FIRST, SECOND))
    assert members(session, a) == ["ann", "bob", "cy"]  # Cy once, though in both
    assert on_duty(session, a) == {"ann", "cy"}
    view = rotation_view(session, a.workspace_id, a.rotation_id)
    assert [s.id for s in view.schedules] == [SID, SID2]
    assert view.schedule is not None
    assert view.schedule.id == SID
    # The next handoff names everyone on duty from then: Bob (the first's) and Cy (the second's).
    assert view.next_handoff is not None
    assert view.next_handoff.at == T + 10 * M
    assert [p.pagerduty_user_id for p in view.next_handoff.people] == [PEOPLE["bob"], PEOPLE["cy"]]
    assert view.next_handoff.text == "Bob, Cy from " + (T + 10 * M).strftime("%H:%M UTC")
    # The first schedule's handoff is planned for the rotation, the second has none.
    session.rollback()
    rows = session.execute(
        select(ScheduledHandoff.schedule_id, ScheduledHandoff.at, ScheduledHandoff.user_ids).where(
            ScheduledHandoff.rotation_id == a.rotation_id
        )
    ).all()
    assert [tuple(r) for r in rows] == [(SID, T + 10 * M, [PEOPLE["bob"]])]


def test_a_handoff_in_one_schedule_keeps_the_others_people_on_duty(session: Session) -> None:
    a = bound_to_both(session)
    sync(session, a, two_schedules(T, FIRST, SECOND))

    run_round(now=T + 10 * M)

    assert on_duty(session, a) == {"bob", "cy"}
    (event,) = handoff_events(a)
    assert event["data"]["came_on_duty"] == [str(a.members["bob"])]
    assert event["data"]["went_off_duty"] == [str(a.members["ann"])]
    # Consumers learn every schedule the rotation follows; schedule_id stays the first.
    assert (event["data"]["schedule_id"], event["data"]["schedule_ids"]) == (SID, [SID, SID2])
    assert on_call_view(session, a) == ({"bob", "cy"}, [])


def test_both_schedules_handing_off_at_one_instant_is_one_change(session: Session) -> None:
    a = bound_to_both(session)
    # At T+10m Ann hands to Bob in the first, and Cy goes off in the second (nobody after).
    sync(session, a, two_schedules(T, FIRST, [("cy", T - 60 * M, T + 10 * M)]))

    run_round(now=T + 10 * M)

    assert on_duty(session, a) == {"bob"}
    (event,) = handoff_events(a)  # one event for the instant, not one per schedule
    assert sorted(event["data"]["went_off_duty"]) == sorted(
        [str(a.members["ann"]), str(a.members["cy"])]
    )


def test_someone_unmatched_in_the_second_schedule_is_listed_once(session: Session) -> None:
    a = bound_to_both(session, with_cy=False)  # no member matches Cy
    sync(session, a, two_schedules(T, FIRST, SECOND))
    assert on_call_view(session, a) == ({"ann"}, [PEOPLE["cy"]])
    run_round(now=T + 10 * M)
    assert on_call_view(session, a) == ({"bob"}, [PEOPLE["cy"]])


def test_an_unreadable_second_schedule_keeps_its_people_while_the_first_is_followed(
    session: Session,
) -> None:
    a = bound_to_both(session)
    sync(session, a, two_schedules(T, FIRST, SECOND))
    assert on_duty(session, a) == {"ann", "cy"}

    # A minute on, PagerDuty has Bob in the first (an override) and fails to render the second.
    later = T + M
    read = two_schedules(later, [("bob", T, None)], SECOND)
    read = replace(
        read,
        timelines={SID: read.timelines[SID]},
        unreadable={SID2: "PagerDuty answered 500."},
    )
    result = sync(session, a, read, later)

    assert on_duty(session, a) == {"bob", "cy"}  # Cy as last read, Bob from the first
    assert members(session, a) == ["ann", "bob", "cy"]
    (warning,) = [w for w in result.warnings if SID2 in w]
    assert "keeps the people that schedule last had on call" in warning


def test_disconnect_makes_it_manual_with_no_schedule_left_keeping_its_people(
    session: Session,
) -> None:
    a = bound_to_both(session)
    sync(session, a, two_schedules(T, FIRST, SECOND))
    run_round(now=T + 10 * M)

    disconnect_connection(a.connection_id)

    session.rollback()
    rot = session.get(Rotation, a.rotation_id)
    assert rot is not None
    assert (rot.mode, rot.pagerduty_schedule_id) == (RotationMode.MANUAL, None)
    assert session.scalars(select(RotationSchedule)).all() == []
    assert session.scalars(select(ScheduledHandoff)).all() == []
    assert on_duty(session, a) == {"bob", "cy"}  # Manual keeps who was on duty
    (made_manual,) = [
        e
        for e in committed_events()
        if e["type"] == "rotation.made_manual" and e["rotation_id"] == str(a.rotation_id)
    ]
    assert made_manual["data"]["previous_schedule_id"] == SID
    assert made_manual["data"]["previous_schedule_ids"] == [SID, SID2]
    view = rotation_view(session, a.workspace_id, a.rotation_id)
    assert (view.schedule, view.schedules) == (None, [])
    conn = session.get(PagerDutyConnection, a.connection_id)
    assert conn is not None
    assert conn.status == "disconnected"

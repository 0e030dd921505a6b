"""The sync plans a bound rotation's handoffs; a round of the ``handoffs`` loop applies them.

Instants are an hour ahead of the real clock and rounds are given their ``now``: the handoff
loops of any live workers in this test process see nothing due, so these tests alone apply.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, Rotation, utcnow
from tests.support.handoffs import (
    PEOPLE,
    arrange,
    handoff_events,
    on_duty,
    pending,
    snapshot,
    sync,
)
from workers.core.db import session_factory
from workers.handoffs.apply import apply_connection, run_round

pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)
# Ann on call until T+10m, then Bob.
ANN_THEN_BOB = [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]


def test_the_sync_plans_and_a_due_handoff_is_applied_once_with_a_handoff_event(
    session: Session,
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    assert on_duty(session, a) == {"ann"}
    assert pending(session, a) == [(T + 10 * M, [PEOPLE["bob"]])]

    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"bob"}
    assert pending(session, a) == []
    (event,) = handoff_events(a)
    assert event["data"]["came_on_duty"] == [str(a.members["bob"])]
    assert event["data"]["went_off_duty"] == [str(a.members["ann"])]
    assert event["data"]["schedule_id"] == "PSHAND1"

    run_round(now=T + 11 * M)  # the row is gone: nothing is applied twice
    assert len(handoff_events(a)) == 1
    assert on_duty(session, a) == {"bob"}


def test_a_round_before_the_instant_changes_nothing_and_sleeps_until_it(
    session: Session,
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    delay = run_round(now=T + 10 * M - timedelta(seconds=1))
    assert on_duty(session, a) == {"ann"}
    assert len(pending(session, a)) == 1
    # Seconds until the instant by the real clock (about 70 minutes; the loop caps it at 1 s).
    assert 60 * 60 < delay <= 71 * 60


def test_a_crash_mid_round_rolls_back_and_the_next_round_applies_it_once(
    session: Session,
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    with session_factory()() as s:
        s.begin()
        apply_connection(s, a.connection_id, T + 10 * M)
        s.rollback()  # the worker dies before the commit
    assert on_duty(session, a) == {"ann"}
    assert len(pending(session, a)) == 1
    assert handoff_events(a) == []

    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"bob"}
    assert len(handoff_events(a)) == 1


def test_after_downtime_the_latest_due_handoff_wins_in_one_change(session: Session) -> None:
    a = arrange(session)
    shifts = [
        ("ann", T - 60 * M, T + 10 * M),
        ("bob", T + 10 * M, T + 20 * M),
        ("cy", T + 20 * M, None),
    ]
    sync(session, a, snapshot(T, shifts))
    assert [at for at, _ in pending(session, a)] == [T + 10 * M, T + 20 * M]
    run_round(now=T + 25 * M)
    assert on_duty(session, a) == {"cy"}
    assert pending(session, a) == []
    (event,) = handoff_events(a)
    assert event["data"]["went_off_duty"] == [str(a.members["ann"])]


@pytest.mark.parametrize("change", ["made_manual", "rebound_elsewhere"])
def test_rows_of_a_rotation_no_longer_bound_to_the_schedule_are_discarded(
    session: Session, change: str
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    rot = session.get(Rotation, a.rotation_id)
    assert rot is not None
    if change == "made_manual":
        rot.make_manual()
    else:
        rot.pagerduty_schedule_id = "POTHER1"
    session.commit()
    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"ann"}
    assert pending(session, a) == []
    assert handoff_events(a) == []


@pytest.mark.parametrize("change", ["new_generation", "disconnected"])
def test_rows_of_a_regenerated_or_disconnected_connection_are_discarded(
    session: Session, change: str
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    conn = session.get(PagerDutyConnection, a.connection_id)
    assert conn is not None
    if change == "new_generation":
        conn.generation += 1
    else:
        conn.status = ConnectionStatus.DISCONNECTED
    session.commit()
    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"ann"}
    assert pending(session, a) == []
    assert handoff_events(a) == []


def test_an_unreadable_schedule_keeps_its_pending_handoffs(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    result = sync(session, a, snapshot(T + M, [], unreadable=True))
    assert any("Primary" in w for w in result.warnings)
    assert pending(session, a) == [(T + 10 * M, [PEOPLE["bob"]])]
    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"bob"}


def test_each_sync_replans_an_override_made_since_replaces_pending_rows(
    session: Session,
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    # An override: Cy from T+5m to T+20m, cutting into Ann's and Bob's shifts.
    override = [
        ("ann", T - 60 * M, T + 5 * M),
        ("cy", T + 5 * M, T + 20 * M),
        ("bob", T + 20 * M, None),
    ]
    sync(session, a, snapshot(T + M, override))
    assert pending(session, a) == [
        (T + 5 * M, [PEOPLE["cy"]]),
        (T + 20 * M, [PEOPLE["bob"]]),
    ]
    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"cy"}


def test_a_quiet_resync_leaves_the_pending_rows_as_they_are(session: Session) -> None:
    from sqlalchemy import select

    from models import ScheduledHandoff

    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    ids = list(session.scalars(select(ScheduledHandoff.id)))
    result = sync(session, a, snapshot(T, ANN_THEN_BOB))
    assert not result.changed
    assert list(session.scalars(select(ScheduledHandoff.id))) == ids


def test_a_handoff_to_a_user_no_member_matches_takes_the_last_one_off_duty(
    session: Session,
) -> None:
    a = arrange(session, with_cy=False)  # Cy is in PagerDuty only
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("cy", T + 10 * M, None)]))
    assert pending(session, a) == [(T + 10 * M, [PEOPLE["cy"]])]
    run_round(now=T + 10 * M)
    # As the sync would do: the on-call person has no member, so nobody is on duty here.
    assert on_duty(session, a) == set()
    assert len(handoff_events(a)) == 1

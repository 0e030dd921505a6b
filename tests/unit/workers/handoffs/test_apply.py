"""The sync plans a bound rotation's handoffs; a round of the ``handoffs`` loop applies them.

Instants are an hour ahead of the real clock and rounds are given their ``now``: the handoff
loops of any live workers in this test process see nothing due, so these tests alone apply.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyOnCall,
    Rotation,
    RotationMode,
    ScheduledHandoff,
    Workspace,
    utcnow,
)
from tests.support import factories
from tests.support.handoffs import (
    PEOPLE,
    SID,
    arrange,
    handoff_events,
    on_call_view,
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


def test_a_handoff_to_a_user_no_member_matches_lists_them_unmatched_at_the_instant(
    session: Session,
) -> None:
    a = arrange(session, with_cy=False)  # Cy is in PagerDuty only
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("cy", T + 10 * M, None)]))
    assert on_call_view(session, a) == ({"ann"}, [])

    run_round(now=T + 10 * M)  # no sync in between
    # Ann's duty and Cy's listing change together: nobody on duty, Cy on call unmatched.
    assert on_call_view(session, a) == (set(), [PEOPLE["cy"]])


def test_at_the_end_of_an_unmatched_shift_only_the_member_back_on_duty_is_on_call(
    session: Session,
) -> None:
    a = arrange(session, with_cy=False)
    shifts = [
        ("ann", T - 60 * M, T + 10 * M),
        ("cy", T + 10 * M, T + 20 * M),
        ("ann", T + 20 * M, None),
    ]
    sync(session, a, snapshot(T, shifts))
    run_round(now=T + 10 * M)
    sync(session, a, snapshot(T + 15 * M, shifts))  # a sync during Cy's shift
    assert on_call_view(session, a) == (set(), [PEOPLE["cy"]])

    run_round(now=T + 20 * M)
    # Not two people on call: Cy leaves the unmatched list at the instant Ann comes back.
    assert on_call_view(session, a) == ({"ann"}, [])
    assert len(handoff_events(a)) == 2


def test_the_sync_after_a_handoff_finds_the_mirror_already_right(session: Session) -> None:
    a = arrange(session, with_cy=False)
    shifts = [("ann", T - 60 * M, T + 10 * M), ("cy", T + 10 * M, T + 20 * M)]
    sync(session, a, snapshot(T, shifts))
    run_round(now=T + 10 * M)
    # The next sync reads the same timeline: the handoff already wrote what it would write.
    result = sync(session, a, snapshot(T + 11 * M, shifts[1:]))
    assert not result.changed
    assert on_call_view(session, a) == (set(), [PEOPLE["cy"]])


def test_a_sync_read_before_the_instant_and_applied_after_it_keeps_the_handoff(
    session: Session,
) -> None:
    a = arrange(session, with_cy=False)
    shifts = [("ann", T - 60 * M, T + 10 * M), ("cy", T + 10 * M, None)]
    sync(session, a, snapshot(T, shifts))
    run_round(now=T + 10 * M)
    # Read from PagerDuty a minute before the instant, applied half a minute after it: "now" is
    # the apply instant for the mirror as for the members on duty, so nothing is undone.
    result = sync(session, a, snapshot(T + 9 * M, shifts), now=T + 10 * M + M / 2)
    assert not result.changed
    assert on_call_view(session, a) == (set(), [PEOPLE["cy"]])


def test_every_rotation_bound_to_the_schedule_changes_at_the_instant(session: Session) -> None:
    a = arrange(session)
    ws = session.get(Workspace, a.workspace_id)
    assert ws is not None
    second = factories.rotation(session, ws, name="Secondary")
    second.mode, second.pagerduty_schedule_id, second.bound_at = RotationMode.PAGERDUTY, SID, T
    session.commit()
    b = replace(a, rotation_id=second.id)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    run_round(now=T + 10 * M)
    assert on_duty(session, a) == {"bob"}
    assert on_duty(session, b) == {"bob"}
    assert len(handoff_events(a)) == 1
    assert len(handoff_events(b)) == 1


def test_a_row_planned_before_rows_carried_shifts_still_moves_the_mirror(
    session: Session,
) -> None:
    a = arrange(session, with_cy=False)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("cy", T + 10 * M, None)]))
    session.execute(update(ScheduledHandoff).values(shifts=None))  # as migration 0007 left it
    session.commit()
    run_round(now=T + 10 * M)
    assert on_call_view(session, a) == (set(), [PEOPLE["cy"]])
    starts, ends = session.execute(select(PagerDutyOnCall.starts_at, PagerDutyOnCall.ends_at)).one()
    assert (starts, ends) == (T + 10 * M, None)  # the instant; the next sync gives the shift


@pytest.mark.postgres_only  # rounds at once on several nodes: concurrency proven on PostgreSQL
def test_concurrent_rounds_on_several_nodes_apply_each_handoff_once(session: Session) -> None:
    arranged = [arrange(session) for _ in range(6)]
    for a in arranged:
        sync(session, a, snapshot(T, ANN_THEN_BOB))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def node() -> None:
        try:
            start.wait(10)
            for _ in range(5):  # the loop goes again at once while a connection was skipped
                run_round(now=T + 10 * M)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    for a in arranged:
        assert on_duty(session, a) == {"bob"}
        assert pending(session, a) == []
        assert len(handoff_events(a)) == 1

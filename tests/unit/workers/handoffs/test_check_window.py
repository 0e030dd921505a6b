"""The on-call check reads one second of PagerDuty; the handoff plan comes from the window the
directory read (or a check that found the stored timeline wrong) read. What the check compares
with (``plan.stored_on_call``), and what a confirming check leaves: the stored on-call and every
planned handoff (re-planned from one second, the plan would be lost), which the loop still
applies at its instant.

Instants are an hour ahead of the real clock and rounds are given their ``now`` (test_apply).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ScheduledHandoff, utcnow
from tests.support.handoffs import (
    PEOPLE,
    SID,
    Arranged,
    arrange,
    handoff_events,
    on_duty,
    pending,
    snapshot,
    sync,
)
from workers.handoffs.apply import run_round
from workers.handoffs.plan import stored_on_call
from workers.pagerduty.snapshot import AccountSnapshot
from workers.pagerduty.window import CHECK_WINDOW

pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)
Shifts = list[tuple[str, datetime | None, datetime | None]]
ANN_THEN_BOB: Shifts = [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]


def _check(at_: datetime, shifts: Shifts, confirmed: bool) -> AccountSnapshot:
    """What a check read at ``at_``: one second of /oncalls, confirmed or not."""
    snap = snapshot(at_, shifts, horizon=CHECK_WINDOW)
    return replace(
        snap,
        users=(),
        users_complete=False,
        directory_read=False,
        users_read=False,
        confirmed=frozenset({SID}) if confirmed else frozenset(),
    )


def _stored(session: Session, a: Arranged, at_: datetime) -> frozenset[str]:
    session.rollback()
    return stored_on_call(session, a.connection_id, [SID], at_)[SID]


def _row_ids(session: Session) -> list[int]:
    session.rollback()
    return list(session.scalars(select(ScheduledHandoff.id).order_by(ScheduledHandoff.id)))


def test_the_stored_timeline_is_the_mirror_then_the_latest_due_handoff(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))

    assert _stored(session, a, T + 5 * M) == {PEOPLE["ann"]}  # the on-call mirror
    # Due but not applied yet (the loop is a round behind): the handoff is what is stored.
    assert _stored(session, a, T + 10 * M) == {PEOPLE["bob"]}
    assert stored_on_call(session, a.connection_id, ["PSOTHER"], T) == {"PSOTHER": frozenset()}


def test_a_confirming_check_keeps_the_plan_and_the_loop_applies_it_at_its_instant(
    session: Session,
) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, ANN_THEN_BOB))
    rows = _row_ids(session)

    written = sync(session, a, _check(T + 5 * M, ANN_THEN_BOB, confirmed=True))

    assert (written.created, written.updated, written.deleted) == (0, 0, 0)
    assert _row_ids(session) == rows
    assert pending(session, a) == [(T + 10 * M, [PEOPLE["bob"]])]
    # The check at the instant itself, before the loop's round: PagerDuty says Bob, the due
    # row says Bob; the check writes nothing and the round applies it, at its instant.
    assert _stored(session, a, T + 10 * M) == {PEOPLE["bob"]}
    sync(session, a, _check(T + 10 * M, ANN_THEN_BOB, confirmed=True))
    assert on_duty(session, a) == {"ann"}

    run_round(now=T + 10 * M + timedelta(seconds=1))

    assert on_duty(session, a) == {"bob"}
    assert pending(session, a) == []
    (event,) = handoff_events(a)
    assert event["data"]["came_on_duty"] == [str(a.members["bob"])]

"""A schedule /oncalls does not show, read by its detail over the whole window: confirmed in
memory only where apply would keep its stored timeline as it is (workers/sync/batch_confirm.py).

In memory only: the plan as the batch's statements leave it, the check as read_check returns it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from workers.connections.tokens import ConnectionCredential
from workers.pagerduty.records import Credential, Shift, Timeline, UserRef
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync.batch_confirm import window_confirmed
from workers.sync.batch_plan import BoundRotation, CheckPlan, Route

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
SID = "PSUNUSE"
ROTATION = uuid.uuid4()


def _at(hour: int) -> datetime:
    return T0.replace(hour=hour)


def _iso(hour: int) -> str:
    return _at(hour).isoformat()


def _shift(user: str, start: int, end: int) -> Shift:
    return Shift(SID, UserRef(user), _at(start), _at(end))


# Ann is on call until 14:00, then Bob; the 6-hour window ends at 18:00 (Bob's shift cut there).
AS_STORED = (_shift("PANN", 8, 14), _shift("PBOB", 14, 18))


def _check(*shifts: Shift) -> AccountSnapshot:
    timeline = Timeline(SID, T0, T0 + timedelta(hours=6), shifts)
    return AccountSnapshot(
        fetched_at=T0, users=(), users_complete=False, schedules=(), timelines={SID: timeline},
        directory_read=False, users_read=False,
    )  # fmt: skip


def _plan(**changes: object) -> CheckPlan:
    """What the plan read: Ann mirrored as on call, the 14:00 handoff to Bob pending."""
    cid = uuid.uuid4()
    cred = ConnectionCredential(
        cid, uuid.uuid4(), 3, "api_key", "", Credential("api_key", "x"), None
    )
    plan = CheckPlan(cid, Route.CHECK, "connected", cred)
    plan.rotations = [BoundRotation(ROTATION, SID, False)]
    plan.names = {SID: (SID, None)}
    plan.members = {SID: []}
    plan.stored_at = T0
    plan.stored = {SID: frozenset({"PANN"})}
    plan.spans = {SID: {"PANN": (_at(8), _at(14))}}
    plan.handoffs = {ROTATION: [(1, _at(14), ["PBOB"], 3, SID, [["PBOB", _iso(14), _iso(18)]])]}
    for name, value in changes.items():
        setattr(plan, name, value)
    return plan


def test_a_window_that_agrees_with_the_stored_timeline_is_confirmed() -> None:
    assert window_confirmed(_plan(), _check(*AS_STORED)) == {SID}


def test_an_override_later_today_is_not_confirmed() -> None:
    """Cat covers 16:00-17:00: a handoff the stored plan lacks, so apply must plan it."""
    override = (_shift("PANN", 8, 14), _shift("PBOB", 14, 16), _shift("PCAT", 16, 17))
    assert window_confirmed(_plan(), _check(*override, _shift("PBOB", 17, 18))) == set()


def test_someone_else_on_call_now_is_not_confirmed() -> None:
    assert window_confirmed(_plan(), _check(_shift("PCAT", 8, 14), AS_STORED[1])) == set()


def test_a_changed_shift_of_whoever_is_on_call_now_is_not_confirmed() -> None:
    """Same person, but Ann's shift now ends at 13:00: the mirror's row and the handoff move."""
    assert window_confirmed(_plan(), _check(_shift("PANN", 8, 13), _shift("PBOB", 13, 18))) == set()


def test_a_handoff_due_and_not_applied_yet_is_left_to_apply() -> None:
    rows = _plan().handoffs[ROTATION] + [(2, _at(11), ["PANN"], 3, SID, [])]
    assert window_confirmed(_plan(handoffs={ROTATION: rows}), _check(*AS_STORED)) == set()


def test_a_handoff_planned_under_another_generation_or_without_shifts_is_not_kept() -> None:
    (row,) = _plan().handoffs[ROTATION]
    old = (*row[:3], 2, *row[4:])
    bare = (*row[:5], None)
    for stored in (old, bare):
        plan = _plan(handoffs={ROTATION: [stored]})
        assert window_confirmed(plan, _check(*AS_STORED)) == set()


def test_a_missing_handoff_row_is_not_confirmed() -> None:
    assert window_confirmed(_plan(handoffs={}), _check(*AS_STORED)) == set()


def test_a_check_of_now_only_is_left_to_read_check() -> None:
    """/oncalls over one second: read_check's comparison, not this one's."""
    check = _check(*AS_STORED)
    now_only = replace(check.timelines[SID], until=T0 + timedelta(seconds=1))
    assert window_confirmed(_plan(), replace(check, timelines={SID: now_only})) == set()

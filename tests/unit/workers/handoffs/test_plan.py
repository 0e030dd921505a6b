"""Planning handoffs from a schedule's rendered timeline (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.handoffs.plan import PlannedHandoff, handoffs_in
from workers.pagerduty.records import Shift, Timeline, UserRef

pytestmark = pytest.mark.clock  # the clock lane runs it at other hours too

T0 = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
H = timedelta(hours=1)
ANN, BOB, CY = UserRef("PANN", "Ann"), UserRef("PBOB", "Bob"), UserRef("PCY", "Cy")


def _timeline(*shifts: tuple[UserRef, datetime | None, datetime | None]) -> Timeline:
    return Timeline(
        schedule_id="PS1",
        since=T0,
        until=T0 + 6 * H,
        shifts=tuple(Shift("PS1", u, start, end) for u, start, end in shifts),
    )


def test_consecutive_shifts_hand_over_at_each_boundary_but_not_at_the_window_end() -> None:
    timeline = _timeline(
        (ANN, T0 - H, T0 + H), (BOB, T0 + H, T0 + 3 * H), (ANN, T0 + 3 * H, T0 + 6 * H)
    )
    assert handoffs_in(timeline, T0) == [
        PlannedHandoff(T0 + H, ("PBOB",)),
        PlannedHandoff(T0 + 3 * H, ("PANN",)),
    ]


def test_overlapping_shifts_give_several_people_and_gaps_give_nobody() -> None:
    timeline = _timeline(
        (ANN, T0 - H, T0 + 2 * H),
        (BOB, T0 + H, T0 + 3 * H),  # overlaps Ann for an hour
        (CY, T0 + 4 * H, None),  # after an hour with nobody on call
    )
    assert handoffs_in(timeline, T0) == [
        PlannedHandoff(T0 + H, ("PANN", "PBOB")),
        PlannedHandoff(T0 + 2 * H, ("PBOB",)),
        PlannedHandoff(T0 + 3 * H, ()),
        PlannedHandoff(T0 + 4 * H, ("PCY",)),
    ]


def test_an_override_replacing_a_shift_is_two_handoffs_and_an_unchanged_boundary_none() -> None:
    # PagerDuty renders an override by cutting the layer's shift around it (final schedule).
    timeline = _timeline(
        (ANN, T0 - H, T0 + H),
        (BOB, T0 + H, T0 + 2 * H),  # the override
        (ANN, T0 + 2 * H, T0 + 4 * H),
        (ANN, T0 + 4 * H, T0 + 6 * H),  # Ann again after Ann: no change, no handoff
    )
    assert handoffs_in(timeline, T0) == [
        PlannedHandoff(T0 + H, ("PBOB",)),
        PlannedHandoff(T0 + 2 * H, ("PANN",)),
    ]


def test_only_instants_after_since_count() -> None:
    timeline = _timeline((ANN, T0 - H, T0 + H), (BOB, T0 + H, T0 + 6 * H))
    assert handoffs_in(timeline, T0 + H) == []  # Bob is already on call at since
    assert handoffs_in(timeline, T0 + 30 * timedelta(minutes=1)) == [
        PlannedHandoff(T0 + H, ("PBOB",))
    ]

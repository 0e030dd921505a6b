"""The "your shift moved" diff (workers.sync.upcoming_diff): only time that moved between people
inside the window both reads cover is a change; time passing, the window sliding and a re-read
that cuts the same time into other pieces are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.sync.upcoming_diff import (
    PersonChange,
    decode,
    diff,
    encode,
    merge,
    planned,
    subtract,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def daily(read_from: datetime, days: int = 9, people: tuple[str, ...] = ("ANN", "BEN")) -> list:
    """A daily rotation handing over at 09:00, ``people`` in turn from T0 (a day each)."""
    return [
        (people[i % len(people)], at(24 * i), at(24 * (i + 1)))
        for i in range(-1, days)
        if at(24 * (i + 1)) > read_from
    ]


def test_the_same_answer_read_again_is_no_change() -> None:
    old = planned(daily(T0), T0, T0 + WEEK)
    assert diff(old, planned(daily(T0), T0, T0 + WEEK)) == {}


def test_time_passing_and_the_window_sliding_are_no_change() -> None:
    old = planned(daily(T0), T0, T0 + WEEK)
    later = at(5.5)  # a read 5 h 30 later: shifts already ended, a day beyond the old window
    new = planned(daily(later), later, later + WEEK)
    assert diff(old, new) == {}
    assert diff(new, old) == {}  # either way round


def test_one_persons_time_cut_into_other_pieces_is_no_change() -> None:
    # A detail read gives Ann 09:00-21:00 and 21:00-09:00; /oncalls gives her one row for
    # both, twice (two escalation levels), overlapping.
    old = planned([("ANN", at(0), at(12)), ("ANN", at(12), at(24))], T0, T0 + WEEK)
    new = planned(
        [("ANN", at(0), at(24)), ("ANN", at(0), at(24)), ("ANN", at(6), at(18))],
        T0,
        T0 + WEEK,
    )
    assert diff(old, new) == {}
    assert old.intervals == {"ANN": ((at(0), at(24)),)}  # stored as one interval


def test_an_override_for_tomorrow_moves_its_hours_from_one_person_to_another() -> None:
    old = planned(daily(T0), T0, T0 + WEEK)  # tomorrow 09:00-09:00 is Ben's
    override = [("CY", at(24), at(32))]  # tomorrow 09:00-17:00: Cy instead
    new_shifts = [s for s in daily(at(1)) if s[1] != at(24)]
    new_shifts += [*override, ("BEN", at(32), at(48))]
    new = planned(new_shifts, at(1), at(1) + WEEK)

    changes = diff(old, new)

    assert changes == {
        "BEN": PersonChange(added=(), removed=((at(24), at(32)),)),
        "CY": PersonChange(added=((at(24), at(32)),), removed=()),
    }


def test_a_member_removed_gives_their_future_time_to_the_others() -> None:
    old = planned(daily(T0, people=("ANN", "BEN", "CY")), T0, T0 + WEEK)
    new = planned(daily(T0, people=("ANN", "BEN")), T0, T0 + WEEK)

    changes = diff(old, new)

    # Cy's days (2 and 5) go; Ann and Ben gain and lose days as their turns move up.
    assert changes["CY"].added == ()
    assert changes["CY"].removed == ((at(48), at(72)), (at(120), at(144)))
    gained = [span for c in changes.values() for span in c.added]
    lost = [span for c in changes.values() for span in c.removed]
    # Every hour someone lost, someone else gained: nobody on call is not a change here.
    assert merge(gained) == merge(lost)


def test_nobody_on_call_is_time_removed_with_nobody_added() -> None:
    old = planned([("ANN", at(0), at(48))], T0, T0 + WEEK)
    new = planned([("ANN", at(0), at(30))], T0, T0 + WEEK)  # a gap from tomorrow 15:00
    assert diff(old, new) == {"ANN": PersonChange(removed=((at(30), at(48)),))}


def test_changes_outside_the_window_both_reads_cover_are_not_reported() -> None:
    old = planned([("ANN", at(0), at(24 * 7))], T0, T0 + WEEK)
    later = at(24)
    # After the old window's end, Ben: the old read never covered that time.
    new = planned(
        [("ANN", later, T0 + WEEK), ("BEN", T0 + WEEK, later + WEEK)], later, later + WEEK
    )
    assert diff(old, new) == {}


def test_no_overlap_no_change() -> None:
    old = planned([("ANN", at(0), at(24))], T0, at(24))
    new = planned([("BEN", at(24), at(48))], at(24), at(48))
    assert diff(old, new) == {}


def test_open_shifts_are_clipped_to_the_window() -> None:
    plan = planned([("ANN", None, None)], T0, T0 + WEEK)
    assert plan.intervals == {"ANN": ((T0, T0 + WEEK),)}


def test_a_stored_plan_reads_back_as_it_was() -> None:
    plan = planned([*daily(T0), ("CY", at(30), at(31))], T0, T0 + WEEK)
    assert decode(encode(plan), T0, T0 + WEEK) == plan


def test_subtract_cuts_holes() -> None:
    spans = [(at(0), at(10)), (at(20), at(30))]
    assert subtract(spans, [(at(2), at(4)), (at(8), at(22))]) == [
        (at(0), at(2)),
        (at(4), at(8)),
        (at(22), at(30)),
    ]
    assert subtract(spans, []) == spans
    assert subtract(spans, [(at(-5), at(40))]) == []

"""The report's arithmetic: business hours and weekends in a zone, across DST and midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from workers.reports.hours import Calendar, epoch_seconds

H = 3600


def _split(zone: str, start: datetime, end: datetime) -> tuple[int, int, int]:
    s = Calendar(ZoneInfo(zone)).split(epoch_seconds(start), epoch_seconds(end))
    return s.total, s.outside_business, s.weekend


def test_a_weekend_with_the_spring_clock_change_is_47_hours_in_paris() -> None:
    paris = ZoneInfo("Europe/Paris")
    # Saturday 28 March 2026 00:00 to Monday 00:00: Sunday loses an hour (02:00 -> 03:00).
    start = datetime(2026, 3, 28, tzinfo=paris)
    end = datetime(2026, 3, 30, tzinfo=paris)
    assert _split("Europe/Paris", start, end) == (47 * H, 47 * H, 47 * H)


def test_friday_to_monday_across_the_autumn_change_in_new_york() -> None:
    ny = ZoneInfo("America/New_York")
    # Friday 30 October 16:00 EDT to Monday 2 November 10:00 EST; Sunday has 25 hours.
    start = datetime(2026, 10, 30, 16, tzinfo=ny)
    end = datetime(2026, 11, 2, 10, tzinfo=ny)
    total, outside, weekend = _split("America/New_York", start, end)
    assert total == 67 * H
    assert outside == 65 * H  # Friday 16-17 and Monday 9-10 were business hours
    assert weekend == 49 * H


def test_a_night_across_midnight_counts_one_business_hour_the_next_morning() -> None:
    start = datetime(2026, 12, 8, 22, tzinfo=UTC)  # a Tuesday
    end = datetime(2026, 12, 9, 10, tzinfo=UTC)
    assert _split("UTC", start, end) == (12 * H, 11 * H, 0)


def test_the_same_instants_in_another_zone_fall_in_other_hours() -> None:
    # Tuesday 09:00-17:00 UTC is 18:00-02:00 in Tokyo: all of it outside business hours.
    start = datetime(2026, 12, 8, 9, tzinfo=UTC)
    end = datetime(2026, 12, 8, 17, tzinfo=UTC)
    assert _split("UTC", start, end) == (8 * H, 0, 0)
    assert _split("Asia/Tokyo", start, end) == (8 * H, 8 * H, 0)


def test_turns_that_meet_at_fractions_of_a_second_add_up_to_the_period() -> None:
    calendar = Calendar(ZoneInfo("Europe/Paris"))
    since = datetime(2026, 3, 27, 12, tzinfo=UTC)
    cuts = [since + timedelta(hours=7 * n, microseconds=137_000 * n) for n in range(12)]
    pieces = [calendar.split(epoch_seconds(a), epoch_seconds(b)) for a, b in pairwise(cuts)]
    whole = calendar.split(epoch_seconds(cuts[0]), epoch_seconds(cuts[-1]))
    assert sum(p.total for p in pieces) == whole.total
    assert sum(p.outside_business for p in pieces) == whole.outside_business
    assert sum(p.weekend for p in pieces) == whole.weekend
    assert whole.weekend == 47 * H  # the period covers that short weekend whole


def test_days_laid_out_in_advance_give_the_same_seconds_as_days_found_by_date() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = epoch_seconds(datetime(2026, 3, 20, 13, 17, tzinfo=UTC))
    laid_out = Calendar(paris)
    laid_out.cover(start, start + 5 * 24 * H)
    by_date = Calendar(paris)
    for hours in (1, 11, 30, 100, 400):  # the longest run past the laid-out days
        end = start + hours * H
        assert laid_out.split(start + 7, end) == by_date.split(start + 7, end)

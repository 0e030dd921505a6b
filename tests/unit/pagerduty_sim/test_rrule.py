"""The RRULE subset v3 events use (facts: WEEKLY, DAILY, MONTHLY, HOURLY, with BYDAY)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pagerduty_sim.rrule import RRuleError, occurrences, parse_rrule

NY = ZoneInfo("America/New_York")
UTCZ = ZoneInfo("UTC")
HOUR = timedelta(hours=1)


def window(rule: str, start: datetime, lo: datetime, hi: datetime, tz=UTCZ, dur=HOUR):
    return list(occurrences(parse_rrule(rule), start, tz, lo, hi, dur))


def brute(rule: str, start: datetime, lo: datetime, hi: datetime, tz=UTCZ, dur=HOUR):
    """Enumerate from the very first occurrence (no skipping ahead), then keep the window."""
    every = list(occurrences(parse_rrule(rule), start, tz, start - dur, hi, dur))
    return [(k, s) for k, s in every if s + dur > lo and s < hi]


def test_weekly_byday_business_days() -> None:
    start = datetime(2024, 1, 1, 9, tzinfo=NY)  # a Monday
    got = window(
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        start,
        start,
        start + timedelta(days=14),
        NY,
        timedelta(hours=8),
    )
    assert [s.strftime("%a %d") for _, s in got] == [
        "Mon 01", "Tue 02", "Wed 03", "Thu 04", "Fri 05",
        "Mon 08", "Tue 09", "Wed 10", "Thu 11", "Fri 12",
    ]  # fmt: skip
    assert [k for k, _ in got] == list(range(10))
    assert all(s.hour == 9 for _, s in got)


def test_weekly_byday_keeps_wall_clock_across_dst() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)
    got = window("RRULE:FREQ=WEEKLY;BYDAY=MO,WE", start, start, start + timedelta(days=14), NY)
    assert [s.astimezone(NY).hour for _, s in got] == [9, 9, 9, 9]
    assert got[2][1].utcoffset() != got[1][1].utcoffset()  # DST began on 2024-03-10


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SA",
        "RRULE:FREQ=DAILY;INTERVAL=3",
        "RRULE:FREQ=DAILY;BYDAY=SA,SU",
        "RRULE:FREQ=DAILY;INTERVAL=2;BYDAY=MO,FR",
        "RRULE:FREQ=HOURLY;INTERVAL=7",
        "RRULE:FREQ=MONTHLY",
        "RRULE:FREQ=MONTHLY;BYDAY=1MO,-1FR",
        "RRULE:FREQ=WEEKLY",
    ],
)
def test_far_windows_number_occurrences_like_walking_from_the_start(rule: str) -> None:
    start = datetime(2024, 1, 3, 9, 30, tzinfo=NY)  # a Wednesday
    lo = datetime(2026, 5, 17, 2, tzinfo=UTC)
    hi = lo + timedelta(days=20)
    fast = window(rule, start, lo, hi, NY)
    assert fast == brute(rule, start, lo, hi, NY)
    assert fast or rule.startswith("RRULE:FREQ=MONTHLY")


def test_monthly_on_the_31st_skips_short_months() -> None:
    start = datetime(2024, 1, 31, 8, tzinfo=UTC)
    got = window("RRULE:FREQ=MONTHLY", start, start, datetime(2024, 8, 1, tzinfo=UTC))
    assert [s.date().isoformat() for _, s in got] == [
        "2024-01-31",
        "2024-03-31",
        "2024-05-31",
        "2024-07-31",
    ]


def test_monthly_byday_ordinals_and_bymonthday() -> None:
    start = datetime(2024, 1, 1, 9, tzinfo=UTC)
    end = datetime(2024, 4, 1, tzinfo=UTC)
    first_mon_last_fri = window("RRULE:FREQ=MONTHLY;BYDAY=1MO,-1FR", start, start, end)
    assert [s.date().isoformat() for _, s in first_mon_last_fri] == [
        "2024-01-01", "2024-01-26", "2024-02-05", "2024-02-23", "2024-03-04", "2024-03-29",
    ]  # fmt: skip
    mid = window("RRULE:FREQ=MONTHLY;BYMONTHDAY=15,-1", start, start, end)
    assert [s.date().isoformat() for _, s in mid] == [
        "2024-01-15", "2024-01-31", "2024-02-15", "2024-02-29", "2024-03-15", "2024-03-31",
    ]  # fmt: skip


def test_count_and_until() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    far = datetime(2025, 1, 1, tzinfo=UTC)
    assert len(window("RRULE:FREQ=DAILY;COUNT=3", start, start, far)) == 3
    until = window("RRULE:FREQ=DAILY;UNTIL=20240105T000000Z", start, start, far)
    assert [s.day for _, s in until] == [1, 2, 3, 4, 5]


def test_hourly_repeats_in_absolute_time() -> None:
    start = datetime(2024, 3, 10, 0, tzinfo=NY)
    got = window("RRULE:FREQ=HOURLY;INTERVAL=6", start, start, start + timedelta(days=1), NY, HOUR)
    assert [(s - start).total_seconds() / 3600 for _, s in got] == [0, 6, 12, 18]


@pytest.mark.parametrize(
    "bad",
    [
        "FREQ=DAILY",
        "RRULE:FREQ=YEARLY",
        "RRULE:FREQ=WEEKLY;BYDAY=1MO",
        "RRULE:FREQ=WEEKLY;BYDAY=XX",
        "RRULE:FREQ=DAILY;BYSETPOS=1",
        "RRULE:FREQ=DAILY;INTERVAL=0",
    ],
)
def test_unsupported_rules_are_refused(bad: str) -> None:
    with pytest.raises(RRuleError):
        parse_rrule(bad)

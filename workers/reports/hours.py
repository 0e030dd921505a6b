"""Seconds on duty split by the workspace's calendar: outside business hours, on weekends.

Business hours are Monday to Friday, 09:00 to 17:00 in the workspace's time zone
(``workspaces.time_zone``, an IANA name, default UTC); a weekend is Saturday and Sunday there,
midnight to midnight. Everything outside business hours counts as "outside", weekends included,
so ``weekend <= outside <= total``. Day boundaries are walked in the zone with ``zoneinfo``:
a day on which the clocks change is 23 or 25 hours long and counted as it was lived.

All arithmetic is in whole seconds since the epoch: every instant is floored to its second
first, so intervals that meet (one ends when the next starts) still meet, and the seconds of
people who took turns add up to the period exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

BUSINESS_START = time(9, 0)
BUSINESS_END = time(17, 0)
BUSINESS_DAYS = frozenset(range(5))  # Monday (0) to Friday (4)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)


def epoch_seconds(moment: datetime) -> int:
    """``moment`` floored to its whole second, as seconds since the epoch (exact integers)."""
    return (moment - EPOCH) // ONE_SECOND


@dataclass(frozen=True)
class Day:
    """One local day, its boundaries in epoch seconds."""

    start: int
    end: int  # the next day's start
    business_start: int
    business_end: int
    weekend: bool
    business_day: bool


@dataclass
class Split:
    total: int = 0
    outside_business: int = 0
    weekend: int = 0

    def add(self, other: Split) -> None:
        self.total += other.total
        self.outside_business += other.outside_business
        self.weekend += other.weekend


class Calendar:
    """A zone's days, computed once each (a year of intervals walks the same days often)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[date, Day] = {}

    def _at(self, day: date, when: time) -> int:
        return epoch_seconds(datetime.combine(day, when, tzinfo=self.zone))

    def day(self, day: date) -> Day:
        found = self._days.get(day)
        if found is None:
            weekday = day.weekday()
            found = Day(
                start=self._at(day, time(0)),
                end=self._at(day + timedelta(days=1), time(0)),
                business_start=self._at(day, BUSINESS_START),
                business_end=self._at(day, BUSINESS_END),
                weekend=weekday >= 5,
                business_day=weekday in BUSINESS_DAYS,
            )
            self._days[day] = found
        return found

    def local_date(self, seconds: int) -> date:
        return (EPOCH + timedelta(seconds=seconds)).astimezone(self.zone).date()

    def split(self, start: int, end: int) -> Split:
        """Seconds of [start, end) (epoch seconds): in all, outside business hours, weekend."""
        out = Split()
        if end <= start:
            return out
        out.total = end - start
        business = 0
        current = self.local_date(start)
        while True:
            day = self.day(current)
            if day.start >= end:
                break
            if day.weekend:
                out.weekend += _overlap(start, end, day.start, day.end)
            if day.business_day:
                business += _overlap(start, end, day.business_start, day.business_end)
            current += timedelta(days=1)
        out.outside_business = out.total - business
        return out


def _overlap(a: int, b: int, c: int, d: int) -> int:
    return max(0, min(b, d) - max(a, c))

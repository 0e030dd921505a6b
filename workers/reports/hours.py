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

from bisect import bisect_right
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
    """A zone's days, each computed once: a year of intervals walks the same days again and
    again, so the days of the period are laid out in arrays and found by bisection."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[date, Day] = {}
        self._starts: list[int] = []  # the covered days, in order (``cover``)
        self._covered: list[Day] = []

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

    def cover(self, start: int, end: int) -> None:
        """Lay out the days of [start, end) so ``split`` finds them without date arithmetic."""
        current = self.local_date(start)
        covered = []
        while True:
            day = self.day(current)
            covered.append(day)
            if day.end >= end:
                break
            current += timedelta(days=1)
        self._covered = covered
        self._starts = [d.start for d in covered]

    def _first_day(self, start: int) -> int:
        """Index in the covered days of the day holding ``start`` (-1: not covered)."""
        starts = self._starts
        if starts and starts[0] <= start < self._covered[-1].end:
            return bisect_right(starts, start) - 1
        return -1

    def split(self, start: int, end: int) -> Split:
        """Seconds of [start, end) (epoch seconds): in all, outside business hours, weekend."""
        out = Split()
        if end <= start:
            return out
        out.total = end - start
        business = 0
        index = self._first_day(start)
        current = self.local_date(start) if index < 0 else None
        covered = self._covered
        while True:
            if current is None and index < len(covered):
                day = covered[index]
                index += 1
            else:
                if current is None:  # past the covered days: on by date
                    current = self.local_date(covered[-1].end)
                day = self.day(current)
                current += timedelta(days=1)
            if day.start >= end:
                break
            if day.weekend:
                out.weekend += max(0, min(end, day.end) - max(start, day.start))
            elif day.business_day:
                business += max(0, min(end, day.business_end) - max(start, day.business_start))
        out.outside_business = out.total - business
        return out

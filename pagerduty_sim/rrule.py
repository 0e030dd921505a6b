"""The RFC 5545 RRULE subset v3 schedule events use: expanded lazily, for the window asked about.

Supported: `FREQ=HOURLY|DAILY|WEEKLY|MONTHLY`, `INTERVAL`, `BYDAY` (weekdays, with ordinals such
as `1MO` / `-1FR` for MONTHLY), `BYMONTHDAY` (MONTHLY, DAILY), `COUNT`, `UNTIL` and `WKST`.
DAILY/WEEKLY/MONTHLY repeat on the schedule's wall clock (like a calendar, across DST changes);
HOURLY repeats in absolute time. Occurrences are numbered from the event's first one (DTSTART)
so rotating assignment strategies keep their cadence however far the window is from it.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

FREQS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_NOMINAL = {"HOURLY": 3600, "DAILY": 86400, "WEEKLY": 604800, "MONTHLY": 28 * 86400}
MAX_SEQUENTIAL_PERIODS = 500_000  # guard for rules that cannot skip ahead (HOURLY+BYDAY)


class RRuleError(ValueError):
    pass


@dataclass(frozen=True)
class RRule:
    text: str
    freq: str
    interval: int = 1
    byday: tuple[tuple[int, int], ...] = ()  # (ordinal, 0=MO..6=SU); ordinal 0 = every
    bymonthday: tuple[int, ...] = ()
    count: int | None = None
    until: datetime | None = None
    wkst: int = 0


def parse_rrule(text: str) -> RRule:
    raw = text.strip()
    if not raw.upper().startswith("RRULE:"):
        raise RRuleError(f"expected 'RRULE:...', got {text!r}")
    parts: dict[str, str] = {}
    for item in raw[len("RRULE:") :].split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise RRuleError(f"malformed RRULE part {item!r}")
        parts[key.upper()] = value.upper()
    freq = parts.pop("FREQ", "")
    if freq not in FREQS:
        raise RRuleError(f"FREQ must be one of {', '.join(FREQS)}, got {freq or None!r}")
    try:
        interval = int(parts.pop("INTERVAL", "1"))
        count = int(parts["COUNT"]) if "COUNT" in parts else None
        bymonthday = tuple(int(d) for d in parts.pop("BYMONTHDAY", "").split(",") if d)
    except ValueError:
        raise RRuleError(f"INTERVAL, COUNT and BYMONTHDAY must be integers in {text!r}") from None
    parts.pop("COUNT", None)
    if interval < 1 or (count is not None and count < 1):
        raise RRuleError("INTERVAL and COUNT must be positive")
    if any(d == 0 or not -31 <= d <= 31 for d in bymonthday):
        raise RRuleError("BYMONTHDAY values must be 1..31 or -31..-1")
    byday: list[tuple[int, int]] = []
    for tok in (t for t in parts.pop("BYDAY", "").split(",") if t):
        code = tok[-2:]
        if code not in WEEKDAYS:
            raise RRuleError(f"BYDAY value {tok!r} is not a weekday (MO..SU)")
        ordinal = tok[:-2]
        try:
            n = int(ordinal) if ordinal not in ("", "+") else 0
        except ValueError:
            raise RRuleError(f"BYDAY value {tok!r} has a bad ordinal") from None
        if n and freq != "MONTHLY":
            raise RRuleError(f"BYDAY ordinals like {tok!r} are only meaningful with FREQ=MONTHLY")
        if not -5 <= n <= 5:
            raise RRuleError(f"BYDAY ordinal in {tok!r} must be within -5..5")
        byday.append((n, WEEKDAYS.index(code)))
    until = None
    if "UNTIL" in parts:
        u = parts.pop("UNTIL")
        try:
            until = (
                datetime.strptime(u, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                if "T" in u
                else datetime.strptime(u, "%Y%m%d").replace(tzinfo=UTC)
            )
        except ValueError:
            raise RRuleError(f"UNTIL must look like 20250101T000000Z, got {u!r}") from None
    wkst = parts.pop("WKST", "MO")
    if wkst not in WEEKDAYS:
        raise RRuleError(f"WKST must be a weekday, got {wkst!r}")
    if parts:
        raise RRuleError(f"unsupported RRULE part(s) {sorted(parts)} in {text!r}")
    if bymonthday and freq not in ("MONTHLY", "DAILY"):
        raise RRuleError("BYMONTHDAY is supported with FREQ=MONTHLY or DAILY only")
    return RRule(
        raw,
        freq,
        interval,
        tuple(byday),
        bymonthday,
        count,
        until,
        WEEKDAYS.index(wkst),
    )


def _add_months(d: date, months: int) -> tuple[int, int]:
    m = d.month - 1 + months
    return d.year + m // 12, m % 12 + 1


def _month_days(rule: RRule, year: int, month: int, start_day: int) -> list[int]:
    ndays = calendar.monthrange(year, month)[1]
    days: set[int] | None = None
    if rule.byday:
        found: set[int] = set()
        for n, wd in rule.byday:
            matches = [d for d in range(1, ndays + 1) if date(year, month, d).weekday() == wd]
            if n == 0:
                found.update(matches)
            elif -len(matches) <= n <= len(matches) and n != 0:
                found.add(matches[n - 1] if n > 0 else matches[n])
        days = found
    if rule.bymonthday:
        md = {d if d > 0 else ndays + 1 + d for d in rule.bymonthday if abs(d) <= ndays}
        days = md if days is None else days & md
    if days is None:
        days = {start_day} if start_day <= ndays else set()  # RFC 5545: invalid dates skipped
    return sorted(days)


class _Expander:
    def __init__(self, rule: RRule, dtstart: datetime, tz: ZoneInfo) -> None:
        self.rule = rule
        self.tz = tz
        self.start_utc = dtstart.astimezone(UTC)
        self.local = dtstart.astimezone(tz).replace(tzinfo=None)
        self.tod = self.local.time()
        self.bywd = {wd for _, wd in rule.byday}

    def aware(self, naive: datetime) -> datetime:
        return naive.replace(tzinfo=self.tz)

    def candidates(self, p: int) -> list[datetime]:
        """Occurrences (aware) of period p, at or after DTSTART, in order."""
        r, step = self.rule, self.rule.interval * p
        out: list[datetime] = []
        if r.freq == "HOURLY":
            s = self.start_utc + timedelta(hours=step)
            if not self.bywd or s.astimezone(self.tz).weekday() in self.bywd:
                out.append(s)
            return out
        if r.freq == "DAILY":
            day = self.local.date() + timedelta(days=step)
            if self.bywd and day.weekday() not in self.bywd:
                return out
            if r.bymonthday:
                ndays = calendar.monthrange(day.year, day.month)[1]
                wanted = {d if d > 0 else ndays + 1 + d for d in r.bymonthday}
                if day.day not in wanted:
                    return out
            out.append(self.aware(datetime.combine(day, self.tod)))
            return out
        if r.freq == "WEEKLY":
            d0 = self.local.date()
            week0 = d0 - timedelta(days=(d0.weekday() - r.wkst) % 7)
            week = week0 + timedelta(weeks=step)
            wds = sorted(self.bywd) if self.bywd else [d0.weekday()]
            for wd in sorted(wds, key=lambda w: (w - r.wkst) % 7):
                day = week + timedelta(days=(wd - r.wkst) % 7)
                naive = datetime.combine(day, self.tod)
                if naive >= self.local:
                    out.append(self.aware(naive))
            return out
        year, month = _add_months(self.local.date(), step)
        for d in _month_days(r, year, month, self.local.day):
            naive = datetime.combine(date(year, month, d), self.tod)
            if naive >= self.local:
                out.append(self.aware(naive))
        return out

    def cycle(self) -> int | None:
        """Periods after which the per-period occurrence count repeats (None: walk them)."""
        r = self.rule
        if r.freq == "MONTHLY" or (r.freq == "HOURLY" and self.bywd):
            return None
        if r.freq == "DAILY" and r.bymonthday:
            return None
        if r.freq == "DAILY" and self.bywd:
            return 7 // math.gcd(7, r.interval)
        return 1

    def occurrences(
        self, lo: datetime, hi: datetime, dur: timedelta
    ) -> Iterator[tuple[int, datetime]]:
        """(index, start) of every occurrence whose [start, start + dur) meets [lo, hi)."""
        r = self.rule
        period = timedelta(seconds=_NOMINAL[r.freq] * r.interval)
        p, k = 0, 0
        q = self.cycle()
        if q is not None:
            target = math.floor((lo - dur - self.start_utc) / period) - 2
            if target > 1:
                counts = [len(self.candidates(i)) for i in range(1, q + 1)]
                full, rest = divmod(target - 1, q)
                k = len(self.candidates(0)) + full * sum(counts) + sum(counts[:rest])
                p = target
        walked = 0
        while True:
            cands = self.candidates(p)
            if not cands and r.freq != "MONTHLY" and self.period_start(p) >= hi:
                return
            for s in cands:
                if r.count is not None and k >= r.count:
                    return
                if r.until is not None and s > r.until:
                    return
                if s >= hi:
                    return
                if s + dur > lo:
                    yield k, s
                k += 1
            p += 1
            walked += 1
            if self.period_start(p) >= hi + period:
                return
            if walked > MAX_SEQUENTIAL_PERIODS:
                raise RRuleError("recurrence too far from its start to expand")

    def period_start(self, p: int) -> datetime:
        r, step = self.rule, self.rule.interval * p
        if r.freq == "HOURLY":
            return self.start_utc + timedelta(hours=step)
        if r.freq == "DAILY":
            return self.aware(datetime.combine(self.local.date() + timedelta(days=step), self.tod))
        if r.freq == "WEEKLY":
            d0 = self.local.date()
            week0 = d0 - timedelta(days=(d0.weekday() - r.wkst) % 7)
            return self.aware(datetime.combine(week0 + timedelta(weeks=step), self.tod))
        year, month = _add_months(self.local.date(), step)
        return self.aware(datetime(year, month, 1))


def occurrences(
    rule: RRule, dtstart: datetime, tz: ZoneInfo, lo: datetime, hi: datetime, dur: timedelta
) -> Iterator[tuple[int, datetime]]:
    """Numbered occurrences of `rule` from `dtstart` whose span meets [lo, hi)."""
    return _Expander(rule, dtstart, tz).occurrences(lo, hi, dur)

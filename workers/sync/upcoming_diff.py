"""The "your shift moved" diff: plain functions over planned on-duty intervals, no database.

A plan (``Upcoming``) is who PagerDuty has on call for a schedule over a window
``[read_from, read_until)``: per PagerDuty user id, their intervals clipped to the window and
merged (overlapping or touching intervals of one person are one). Two plans are compared only
over the window both cover, so time passing and the window sliding are not changes, and a
re-read that cuts one person's time into other pieces (PagerDuty's shifts, a detail vs
``/oncalls``) is not a change either: only time that moved from one person to another, or
to nobody, is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# [start, end): both set, UTC-aware, start < end.
Span = tuple[datetime, datetime]

# Ids the mirror can hold (the same bound as pagerduty_oncalls.user_pagerduty_id).
MAX_ID = 64


@dataclass(frozen=True)
class Upcoming:
    """Who is on call over ``[read_from, read_until)``: user id -> sorted, disjoint spans."""

    read_from: datetime
    read_until: datetime
    intervals: Mapping[str, tuple[Span, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonChange:
    """One person's planned on-duty time that appeared (``added``) or went (``removed``)."""

    added: tuple[Span, ...] = ()
    removed: tuple[Span, ...] = ()


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans joined."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def clip(spans: Iterable[Span], lo: datetime, hi: datetime) -> list[Span]:
    """The parts of ``spans`` inside ``[lo, hi)``, empty ones dropped."""
    return [(max(s, lo), min(e, hi)) for s, e in spans if max(s, lo) < min(e, hi)]


def subtract(spans: list[Span], minus: list[Span]) -> list[Span]:
    """The time of ``spans`` not in ``minus`` (both merged)."""
    out: list[Span] = []
    for start, end in spans:
        cursor = start
        for m_start, m_end in minus:
            if m_end <= cursor or m_start >= end:
                continue
            if m_start > cursor:
                out.append((cursor, m_start))
            cursor = max(cursor, m_end)
            if cursor >= end:
                break
        if cursor < end:
            out.append((cursor, end))
    return out


def planned(
    shifts: Iterable[tuple[str, datetime | None, datetime | None]],
    read_from: datetime,
    read_until: datetime,
) -> Upcoming:
    """A plan from ``(user id, start, end)`` shifts (``None``: open on that side), clipped to
    the window and merged per person."""
    by_user: dict[str, list[Span]] = {}
    for uid, start, end in shifts:
        if not uid or len(uid) > MAX_ID:
            continue
        by_user.setdefault(uid, []).append((start or read_from, end or read_until))
    intervals = {
        uid: tuple(merged)
        for uid, spans in by_user.items()
        if (merged := merge(clip(spans, read_from, read_until)))
    }
    return Upcoming(read_from, read_until, intervals)


def diff(old: Upcoming, new: Upcoming) -> dict[str, PersonChange]:
    """Per person, the time ``new`` gives them that ``old`` did not (``added``) and the reverse
    (``removed``), over the window both cover; people with no change are left out."""
    lo, hi = max(old.read_from, new.read_from), min(old.read_until, new.read_until)
    if lo >= hi:
        return {}
    out: dict[str, PersonChange] = {}
    for uid in sorted(set(old.intervals) | set(new.intervals)):
        before = merge(clip(old.intervals.get(uid, ()), lo, hi))
        after = merge(clip(new.intervals.get(uid, ()), lo, hi))
        added, removed = subtract(after, before), subtract(before, after)
        if added or removed:
            out[uid] = PersonChange(tuple(added), tuple(removed))
    return out


def encode(plan: Upcoming) -> list[list[str]]:
    """``rotation_upcoming.intervals``: ``[user id, start, end]`` by user, then start."""
    return [
        [uid, start.isoformat(), end.isoformat()]
        for uid in sorted(plan.intervals)
        for start, end in plan.intervals[uid]
    ]


def decode(rows: Iterable[list[str]], read_from: datetime, read_until: datetime) -> Upcoming:
    """The plan a ``rotation_upcoming`` row holds."""
    return planned(
        (
            (uid, datetime.fromisoformat(start), datetime.fromisoformat(end))
            for uid, start, end in rows
        ),
        read_from,
        read_until,
    )

"""The on-call report: per person, seconds on duty in a period, shifts, and the seconds that fell
outside business hours and on weekends in the workspace's time zone (``workers.reports.hours``).

One SQL statement reads the workspace's intervals that overlap [since, until) (optionally one
rotation's), with the members' current names; the rest is Python. Each interval is clipped to the
period (an open one ends at ``now`` if that comes first). A person is a member, or a PagerDuty
user on call whom no member matched, or, for a member deleted since, the name and email the
interval kept. Seconds are summed over rotations: someone on duty in two rotations at once
counts both. ``shifts`` counts the intervals that overlap the period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, case, or_, select, type_coerce
from sqlalchemy.orm import Session

from models import Member, OnDutyInterval, Rotation
from workers.core.access import Actor, Missing, ServiceError, require_manager
from workers.reports.hours import Calendar, Split, epoch_seconds
from workers.reports.zone import workspace_zone, zone_named

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=400)


class BadPeriod(ServiceError):
    status = 400
    code = "invalid_period"


@dataclass
class PersonTotals:
    kind: str  # "member", "pagerduty_user" or "former_member"
    member_id: uuid.UUID | None
    pagerduty_user_id: str | None
    name: str
    email: str | None
    shifts: int = 0
    split: Split = field(default_factory=Split)

    def document(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "member_id": str(self.member_id) if self.member_id else None,
            "pagerduty_user_id": self.pagerduty_user_id,
            "name": self.name,
            "email": self.email,
            "seconds_on_duty": self.split.total,
            "shifts": self.shifts,
            "seconds_outside_business_hours": self.split.outside_business,
            "seconds_on_weekends": self.split.weekend,
        }


@dataclass
class Report:
    since: datetime
    until: datetime
    time_zone: str
    rotation_id: uuid.UUID | None
    people: list[PersonTotals]

    def document(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "time_zone": self.time_zone,
            "rotation_id": str(self.rotation_id) if self.rotation_id else None,
            "business_hours": "Monday to Friday, 09:00 to 17:00",
            "people": [p.document() for p in self.people],
        }


def period(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The period asked for: ``until`` defaults to now, ``since`` to 30 days before ``until``;
    each floored to its second. ``BadPeriod`` unless since < until and it spans ≤ 400 days."""
    end = until or now
    start = since or end - DEFAULT_PERIOD
    start, end = start.replace(microsecond=0), end.replace(microsecond=0)
    if start >= end:
        raise BadPeriod("'since' must be before 'until'.")
    if end - start > MAX_PERIOD:
        raise BadPeriod(
            f"The period is longer than {MAX_PERIOD.days} days; ask for a shorter one.",
            code="period_too_long",
        )
    return start, end


def on_call_report(
    session: Session,
    actor: Actor,
    *,
    since: datetime | None,
    until: datetime | None,
    rotation_id: uuid.UUID | None,
    now: datetime,
) -> Report:
    """The report for the actor's workspace (Primary Owner or Admin)."""
    require_manager(actor)
    start, end = period(since, until, now)
    zone_name = workspace_zone(session, actor.workspace_id)
    if rotation_id is not None:
        found = session.execute(
            select(Rotation.id).where(
                Rotation.id == rotation_id, Rotation.workspace_id == actor.workspace_id
            )
        ).scalar_one_or_none()
        if found is None:
            raise Missing("No such rotation in this workspace.", code="rotation_not_found")
    people = compute(
        read_intervals(session, actor.workspace_id, start, end, rotation_id),
        Calendar(zone_named(zone_name)),
        since=start,
        until=end,
        now=now,
    )
    _name_members(session, people)
    return Report(start, end, zone_name, rotation_id, people)


def read_intervals(
    session: Session,
    workspace_id: uuid.UUID,
    since: datetime,
    until: datetime,
    rotation_id: uuid.UUID | None = None,
) -> list[Any]:
    """The one statement for the intervals overlapping [since, until): who (the kept name and
    email only where no member is named: members are named as they are now) and when.

    A year of a large workspace is ~220,000 rows, so they are read lean: Core rows, no ORM
    objects, and the instants as the driver gives them (``as_instant`` makes them UTC)."""
    iv = OnDutyInterval
    no_member = iv.member_id.is_(None)
    query = select(
        iv.member_id,
        iv.pagerduty_user_id,
        case((no_member, iv.name)),
        case((no_member, iv.email)),
        type_coerce(iv.started_at, DateTime(timezone=True)),
        type_coerce(iv.ended_at, DateTime(timezone=True)),
    ).where(
        iv.workspace_id == workspace_id,
        iv.started_at < until,
        or_(iv.ended_at.is_(None), iv.ended_at > since),
    )
    if rotation_id is not None:
        query = query.where(iv.rotation_id == rotation_id)
    return list(session.connection().execute(query))


def as_instant(value: datetime) -> datetime:
    # PostgreSQL gives aware instants; SQLite naive ones, stored in UTC (models.base).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def compute(
    rows: list[Any], calendar: Calendar, *, since: datetime, until: datetime, now: datetime
) -> list[PersonTotals]:
    """Clip each interval to [since, until) (an open one to ``now`` too), sum per person.
    Members are left unnamed here (``_name_members``)."""
    lo, hi, open_end = epoch_seconds(since), epoch_seconds(until), epoch_seconds(now)
    calendar.cover(lo, hi)
    people: dict[object, PersonTotals] = {}
    for mid, uid, name, email, started, ended in rows:
        key: object = mid if mid is not None else (uid, None if uid is not None else (name, email))
        start = max(lo, epoch_seconds(as_instant(started)))
        end = min(hi, epoch_seconds(as_instant(ended)) if ended is not None else open_end)
        if end <= start:
            continue
        totals = people.get(key)
        if totals is None:
            if mid is not None:
                totals = PersonTotals("member", mid, None, "", None)
            elif uid is not None:
                totals = PersonTotals("pagerduty_user", None, uid, name, email)
            else:
                totals = PersonTotals("former_member", None, None, name, email)
            people[key] = totals
        totals.shifts += 1
        totals.split.add(calendar.split(start, end))
    return list(people.values())


def _name_members(session: Session, people: list[PersonTotals]) -> None:
    """Members by their current name and email; then the rows in order (most seconds first)."""
    ids = [p.member_id for p in people if p.member_id is not None]
    if ids:
        named = {
            mid: (name, email)
            for mid, name, email in session.execute(
                select(Member.id, Member.display_name, Member.email).where(Member.id.in_(ids))
            )
        }
        for person in people:
            if person.member_id is not None:
                person.name, person.email = named.get(person.member_id, ("", None))
    people.sort(key=lambda p: (-p.split.total, p.name.lower(), p.name))


CSV_COLUMNS = (
    "kind",
    "member_id",
    "pagerduty_user_id",
    "name",
    "email",
    "seconds_on_duty",
    "shifts",
    "seconds_outside_business_hours",
    "seconds_on_weekends",
)


def csv_text(report: Report) -> str:
    """The report's rows as CSV with a header line (the period and zone are in the answer's
    headers, not in the rows)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for person in report.people:
        doc = person.document()
        writer.writerow(["" if doc[c] is None else _cell(doc[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> str:
    text = str(value)
    # A cell a spreadsheet would run as a formula (names come from PagerDuty and members).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

"""A workspace with a bound rotation, and snapshots of its schedule, for the handoff tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    PagerDutyConnection,
    RotationMode,
    RotationOnDuty,
    ScheduledHandoff,
    utcnow,
)
from tests.support import factories
from tests.support.outbox import committed_events
from workers.pagerduty.records import Schedule, Shift, Timeline, User, UserRef
from workers.pagerduty.snapshot import AccountSnapshot
from workers.rotations.views import rotation_view
from workers.sync.apply import apply_snapshot

SID = "PSHAND1"
PEOPLE = {"ann": "PUANN01", "bob": "PUBOB01", "cy": "PUCY001"}


@dataclass
class Arranged:
    workspace_id: uuid.UUID
    connection_id: uuid.UUID
    rotation_id: uuid.UUID
    members: dict[str, uuid.UUID]


def arrange(session: Session, *, with_cy: bool = True) -> Arranged:
    """Ann, Bob (and Cy) as members; a connected connection; a rotation bound to ``SID``."""
    ws = factories.workspace(session)
    names = ["ann", "bob", "cy"] if with_cy else ["ann", "bob"]
    members = {
        n: factories.member(session, ws, email=f"{n}@handoffs.example", display_name=n.title())
        for n in names
    }
    conn = factories.api_key_connection(session, ws)
    rot = factories.rotation(session, ws, name="Primary")
    rot.mode = RotationMode.PAGERDUTY
    rot.pagerduty_schedule_id = SID
    rot.bound_at = utcnow()
    session.commit()
    return Arranged(ws.id, conn.id, rot.id, {n: m.id for n, m in members.items()})


def snapshot(
    fetched_at: datetime,
    shifts: list[tuple[str, datetime | None, datetime | None]],
    *,
    unreadable: bool = False,
    horizon: timedelta = timedelta(hours=6),
) -> AccountSnapshot:
    """PagerDuty as read at ``fetched_at``: the three users, ``SID`` with all three as members,
    and its on-call ``shifts`` (name, start, end), or none when ``unreadable``."""
    users = tuple(User(pid, n.title(), f"{n}@handoffs.example") for n, pid in PEOPLE.items())
    refs = tuple(UserRef(pid, n.title()) for n, pid in PEOPLE.items())
    schedule = Schedule(SID, "Primary schedule", "v2", "UTC", members=refs)
    timeline = Timeline(
        SID,
        fetched_at,
        fetched_at + horizon,
        tuple(Shift(SID, UserRef(PEOPLE[n], n.title()), s, e) for n, s, e in shifts),
    )
    return AccountSnapshot(
        fetched_at=fetched_at,
        users=users,
        users_complete=True,
        schedules=(schedule,),
        timelines={} if unreadable else {SID: timeline},
        unreadable={SID: "PagerDuty answered 500."} if unreadable else {},
    )


def sync(session: Session, a: Arranged, snap: AccountSnapshot, now: datetime | None = None) -> Any:
    """The sync's apply step, committed (as ``workers.sync.run`` does under the fence)."""
    session.rollback()
    conn = session.get(PagerDutyConnection, a.connection_id)
    assert conn is not None
    result = apply_snapshot(session, conn, snap, now=now or snap.fetched_at)
    session.commit()
    return result


def on_duty(session: Session, a: Arranged) -> set[str]:
    session.rollback()
    by_id = {mid: n for n, mid in a.members.items()}
    return {
        by_id[mid]
        for mid in session.scalars(
            select(RotationOnDuty.member_id).where(RotationOnDuty.rotation_id == a.rotation_id)
        )
    }


def pending(session: Session, a: Arranged) -> list[tuple[datetime, list[str]]]:
    session.rollback()
    return [
        (r.at, r.user_ids)
        for r in session.scalars(
            select(ScheduledHandoff)
            .where(ScheduledHandoff.rotation_id == a.rotation_id)
            .order_by(ScheduledHandoff.at)
        )
    ]


def on_call_view(session: Session, a: Arranged) -> tuple[set[str], list[str]]:
    """What the API's rotation view shows: members on duty (by name) and the PagerDuty ids in
    ``unmatched_on_call`` (people on call whom no member matches)."""
    session.rollback()
    view = rotation_view(session, a.workspace_id, a.rotation_id)
    return (
        {d.name.lower() for d in view.on_duty},
        [u.pagerduty_user_id for u in view.unmatched_on_call],
    )


def handoff_events(a: Arranged) -> list[dict[str, Any]]:
    return [
        e
        for e in committed_events()
        if e["type"] == "rotation.on_duty.changed"
        and e["rotation_id"] == str(a.rotation_id)
        and e["data"]["cause"] == "handoff"
    ]

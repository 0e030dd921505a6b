"""Who comes on duty next, for people: "Bob from 14:00 UTC" (API, panel, ``rrpd status``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    Member,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutyUser,
    Rotation,
    ScheduledHandoff,
)
from workers.core.connection_rows import live_connection
from workers.core.readmodel import ReadModel
from workers.handoffs.bound import schedules_of


class HandoffPersonOut(ReadModel):
    pagerduty_user_id: str
    name: str = Field(description="The member's name, else PagerDuty's name for the user.")
    member_id: uuid.UUID | None = Field(description="None: no member matches this user.")


class NextHandoffOut(ReadModel):
    at: datetime
    people: list[HandoffPersonOut] = Field(description="Who comes on duty (empty: nobody).")
    text: str = Field(description='For people: "Bob from 14:00 UTC".')


def describe(names: list[str], at_text: str) -> str:
    """The sentence shown to people: "Bob from 14:00 UTC", "Ann, Bob from ...", "nobody from"."""
    return f"{', '.join(names) if names else 'nobody'} from {at_text}"


def next_handoffs(
    session: Session,
    conn: PagerDutyConnection | None,
    rotations: list[Rotation],
    *,
    followed: dict[uuid.UUID, list[str]] | None = None,
) -> dict[uuid.UUID, NextHandoffOut]:
    """Each bound rotation's earliest pending handoff of the current binding and generation
    (absent: none known within the horizon the sync reads)."""
    # ``followed``: the schedules of each bound rotation, when the caller has read them.
    bound = followed if followed is not None else schedules_of(session, [r.id for r in rotations])
    if conn is None or not bound:
        return {}
    rows: dict[uuid.UUID, list[ScheduledHandoff]] = {}
    for row in session.execute(
        select(ScheduledHandoff)
        .where(
            ScheduledHandoff.rotation_id.in_(bound),
            ScheduledHandoff.connection_id == conn.id,
            ScheduledHandoff.generation == conn.generation,
        )
        .order_by(ScheduledHandoff.rotation_id, ScheduledHandoff.at, ScheduledHandoff.id)
    ).scalars():
        if row.schedule_id in bound[row.rotation_id]:
            rows.setdefault(row.rotation_id, []).append(row)
    # A rotation following several schedules: at its earliest instant, everyone on call in any
    # of them then (the changing ones' rows; the others' people as the mirror holds them).
    mirror: dict[str, list[str]] = {}
    if any(len(bound[rid]) > 1 for rid in rows):
        oc = PagerDutyOnCall
        for sid, uid in session.execute(
            select(oc.schedule_pagerduty_id, oc.user_pagerduty_id)
            .where(
                oc.connection_id == conn.id,
                oc.schedule_pagerduty_id.in_({s for sids in bound.values() for s in sids}),
            )
            .order_by(oc.schedule_pagerduty_id, oc.starts_at, oc.user_pagerduty_id)
        ):
            mirror.setdefault(sid, []).append(uid)
    first: dict[uuid.UUID, tuple[datetime, list[str]]] = {}
    for rid, planned in rows.items():
        at = planned[0].at
        at_then = {r.schedule_id: r.user_ids for r in planned if r.at <= at}
        on_call = [u for sid in bound[rid] for u in at_then.get(sid, mirror.get(sid, []))]
        first[rid] = (at, list(dict.fromkeys(on_call)))
    user_ids = {uid for _at, ids in first.values() for uid in ids}
    people: dict[str, tuple[str, uuid.UUID | None, str | None]] = {}
    if user_ids:
        for uid, pd_name, member_id, member_name, member_email in session.execute(
            select(
                PagerDutyUser.pagerduty_id,
                PagerDutyUser.name,
                PagerDutyUser.member_id,
                Member.display_name,
                Member.email,
            )
            .outerjoin(Member, Member.id == PagerDutyUser.member_id)
            .where(PagerDutyUser.connection_id == conn.id, PagerDutyUser.pagerduty_id.in_(user_ids))
        ):
            people[uid] = (member_name or pd_name or uid, member_id, member_email)
    out: dict[uuid.UUID, NextHandoffOut] = {}
    for rid, (at, ids) in first.items():
        who = [people.get(uid, (uid, None, None)) for uid in ids]
        out[rid] = NextHandoffOut(
            at=at,
            people=[
                HandoffPersonOut(pagerduty_user_id=uid, name=name, member_id=member_id)
                for uid, (name, member_id, _email) in zip(ids, who, strict=True)
            ],
            text=describe([name for name, _m, _e in who], at.strftime("%H:%M UTC")),
        )
    return out


def workspace_next_handoffs(session: Session, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    """Each bound rotation of the workspace (by name) with its next handoff or None (rrpd)."""
    rotations = list(
        session.execute(
            select(Rotation)
            .where(
                Rotation.workspace_id == workspace_id, Rotation.pagerduty_schedule_id.is_not(None)
            )
            .order_by(Rotation.name, Rotation.id)
        ).scalars()
    )
    upcoming = next_handoffs(session, live_connection(session, workspace_id), rotations)
    return [
        {"rotation_id": r.id, "rotation": r.name, "next_handoff": upcoming.get(r.id)}
        for r in rotations
    ]

"""Who comes on duty next, for people: "Bob from 14:00 UTC" (API, panel, ``rrpd status``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Member, PagerDutyConnection, PagerDutyUser, Rotation, ScheduledHandoff
from workers.core.connection_rows import live_connection
from workers.core.readmodel import ReadModel


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
    session: Session, conn: PagerDutyConnection | None, rotations: list[Rotation]
) -> dict[uuid.UUID, NextHandoffOut]:
    """Each bound rotation's earliest pending handoff of the current binding and generation
    (absent: none known within the horizon the sync reads)."""
    bound = {r.id: r.pagerduty_schedule_id for r in rotations if r.pagerduty_schedule_id}
    if conn is None or not bound:
        return {}
    first: dict[uuid.UUID, ScheduledHandoff] = {}
    for row in session.execute(
        select(ScheduledHandoff)
        .where(
            ScheduledHandoff.rotation_id.in_(bound),
            ScheduledHandoff.connection_id == conn.id,
            ScheduledHandoff.generation == conn.generation,
        )
        .order_by(ScheduledHandoff.rotation_id, ScheduledHandoff.at)
    ).scalars():
        if row.schedule_id == bound[row.rotation_id]:
            first.setdefault(row.rotation_id, row)
    user_ids = {uid for row in first.values() for uid in row.user_ids}
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
    for rid, row in first.items():
        who = [people.get(uid, (uid, None, None)) for uid in row.user_ids]
        out[rid] = NextHandoffOut(
            at=row.at,
            people=[
                HandoffPersonOut(pagerduty_user_id=uid, name=name, member_id=member_id)
                for uid, (name, member_id, _email) in zip(row.user_ids, who, strict=True)
            ],
            text=describe([name for name, _m, _e in who], row.at.strftime("%H:%M UTC")),
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

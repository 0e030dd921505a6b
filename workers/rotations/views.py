"""Rotations as the API shows them: members, who is on duty, unmatched PagerDuty people."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, selectinload

from models import (
    ConnectionStatus,
    Member,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyUser,
    Rotation,
    RotationMode,
    RotationSchedule,
)
from workers.core.access import Missing
from workers.core.connection_rows import live_connection
from workers.core.readmodel import ReadModel
from workers.handoffs.bound import bound_schedule_pairs, schedule_column
from workers.handoffs.views import NextHandoffOut, next_handoffs


class MemberOut(ReadModel):
    id: uuid.UUID
    name: str
    email: str


class BoundScheduleOut(ReadModel):
    id: str
    name: str | None = Field(description="None when the schedule is not (or no longer) mirrored.")
    missing: bool = Field(
        False,
        description="True when the last directory read did not find the schedule (deleted in "
        "PagerDuty, or not visible to this connection): the rotation keeps its last people.",
    )


class UnmatchedOut(ReadModel):
    pagerduty_user_id: str
    name: str | None
    email: str | None
    active: bool = Field(
        True,
        description="False: the user was deleted in PagerDuty but the schedule still names "
        "them (a placeholder); never linkable to a member.",
    )


class RotationOut(ReadModel):
    id: uuid.UUID
    name: str
    mode: str
    schedule: BoundScheduleOut | None = Field(
        description="The first of the schedules the rotation follows (``schedules[0]``)."
    )
    schedules: list[BoundScheduleOut] = Field(
        default_factory=list,
        description="Every schedule the rotation follows (1 to 10), in order; empty: Manual.",
    )
    bound_at: datetime | None
    last_synced_at: datetime | None
    members: list[MemberOut]
    on_duty: list[MemberOut]
    unmatched_on_call: list[UnmatchedOut] = Field(
        description="People on call for any of the bound schedules with no matching member "
        "(each once)."
    )
    next_handoff: NextHandoffOut | None = Field(
        default=None,
        description="The bound schedule's next on-call change, if one is known within the "
        "hours the sync reads ahead; null otherwise.",
    )


def _member_view(m: Member) -> MemberOut:
    return MemberOut(id=m.id, name=m.display_name, email=m.email)


def list_rotations(session: Session, workspace_id: uuid.UUID) -> list[RotationOut]:
    """Every rotation of the workspace, by name."""
    return _rotation_views(session, workspace_id, None)


def rotation_view(session: Session, workspace_id: uuid.UUID, rotation_id: uuid.UUID) -> RotationOut:
    """One rotation of the workspace; reads that rotation's rows only."""
    for view in _rotation_views(session, workspace_id, rotation_id):
        return view
    raise rotation_missing()


def _rotation_views(
    session: Session, workspace_id: uuid.UUID, rotation_id: uuid.UUID | None
) -> list[RotationOut]:
    """The views of the workspace's rotations, or of the one ``rotation_id``: every later read
    (schedules, on-call people, handoffs) is limited to the rotations read here."""
    query = (
        select(Rotation)
        .where(Rotation.workspace_id == workspace_id)
        # Members and on-duty people in one statement each, not two per rotation.
        .options(selectinload(Rotation.members), selectinload(Rotation.on_duty))
        .order_by(func.lower(Rotation.name), Rotation.id)
    )
    if rotation_id is not None:
        query = query.where(Rotation.id == rotation_id)
    rotations = session.execute(query).unique().scalars().all()
    conn = live_connection(session, workspace_id)
    # The schedules each bound rotation follows, with the mirrored names: one statement.
    followed: dict[uuid.UUID, list[str]] = {}
    names: dict[str, str] = {}
    bound_rotations = [r.id for r in rotations if r.mode == RotationMode.PAGERDUTY]
    if bound_rotations:
        sid_col = schedule_column()
        for rid, sid, name in session.execute(
            bound_schedule_pairs()
            .add_columns(PagerDutySchedule.name)
            .outerjoin(
                PagerDutySchedule,
                and_(
                    PagerDutySchedule.connection_id == (conn.id if conn else None),
                    PagerDutySchedule.pagerduty_id == sid_col,
                ),
            )
            .where(Rotation.id.in_(bound_rotations))
        ):
            followed.setdefault(rid, []).append(sid)
            if name is not None:
                names[sid] = name
    bound_ids = {sid for sids in followed.values() for sid in sids}
    unmatched: dict[str, list[UnmatchedOut]] = {sid: [] for sid in bound_ids}
    if conn is not None and bound_ids:
        rows = session.execute(
            select(
                PagerDutyOnCall.schedule_pagerduty_id,
                PagerDutyOnCall.user_pagerduty_id,
                PagerDutyUser,
            )
            .outerjoin(
                PagerDutyUser,
                and_(
                    PagerDutyUser.connection_id == PagerDutyOnCall.connection_id,
                    PagerDutyUser.pagerduty_id == PagerDutyOnCall.user_pagerduty_id,
                ),
            )
            .where(
                PagerDutyOnCall.connection_id == conn.id,
                PagerDutyOnCall.schedule_pagerduty_id.in_(bound_ids),
            )
            .order_by(PagerDutyOnCall.schedule_pagerduty_id, PagerDutyOnCall.user_pagerduty_id)
        ).all()
        for schedule_id, uid, joined in rows:
            user: PagerDutyUser | None = joined
            if user is None:
                unmatched[schedule_id].append(
                    UnmatchedOut(pagerduty_user_id=uid, name=None, email=None, active=True)
                )
            elif user.member_id is None:
                unmatched[schedule_id].append(
                    UnmatchedOut(
                        pagerduty_user_id=uid, name=user.name, email=user.email, active=user.active
                    )
                )
    # Bound to a schedule the last directory read no longer found (deleted in PagerDuty, or
    # not visible to this credential): flagged, never shown as a schedule without a name only.
    missing = (
        {sid for sid in bound_ids if sid not in names}
        if conn is not None and conn.directory_read_at is not None
        else set()
    )
    upcoming = next_handoffs(session, conn, list(rotations), followed=followed)
    out = []
    for r in rotations:
        sids = followed.get(r.id, [])
        views = [BoundScheduleOut(id=s, name=names.get(s), missing=s in missing) for s in sids]
        out.append(
            RotationOut(
                id=r.id,
                name=r.name,
                mode=r.mode,
                schedule=views[0] if views else None,
                schedules=views,
                bound_at=r.bound_at,
                last_synced_at=r.last_synced_at,
                members=[_member_view(rm.member) for rm in r.members],
                on_duty=[
                    _member_view(d.member)
                    for d in sorted(r.on_duty, key=lambda d: (d.since, d.member.display_name))
                ],
                unmatched_on_call=_unmatched_of(sids, unmatched),
                next_handoff=upcoming.get(r.id),
            )
        )
    return out


def _unmatched_of(sids: list[str], unmatched: dict[str, list[UnmatchedOut]]) -> list[UnmatchedOut]:
    """The unmatched people on call in any of the schedules, each once, schedule by schedule."""
    out: dict[str, UnmatchedOut] = {}
    for sid in sids:
        for person in unmatched.get(sid, []):
            out.setdefault(person.pagerduty_user_id, person)
    return list(out.values())


def rotation_missing() -> Missing:
    """What the API answers for a rotation id that is not in the caller's workspace."""
    return Missing("This rotation does not exist in this workspace.", code="rotation_not_found")


def rotations_missing_schedule(session: Session) -> dict[uuid.UUID, list[str]]:
    """Per live connection whose directory was read, the names of the bound rotations one of
    whose schedules is not mirrored (``rrpd attention``: ``schedule_missing``)."""
    mirrored = select(PagerDutySchedule.id).where(
        PagerDutySchedule.connection_id == PagerDutyConnection.id,
        PagerDutySchedule.pagerduty_id == schedule_column(),
    )
    rows = session.execute(
        select(PagerDutyConnection.id, Rotation.name)
        .distinct()
        .join(Rotation, Rotation.workspace_id == PagerDutyConnection.workspace_id)
        .outerjoin(RotationSchedule, RotationSchedule.rotation_id == Rotation.id)
        .where(
            PagerDutyConnection.status == ConnectionStatus.CONNECTED,
            PagerDutyConnection.directory_read_at.is_not(None),
            Rotation.mode == RotationMode.PAGERDUTY,
            ~mirrored.exists(),
        )
        .order_by(Rotation.name)
    ).all()
    found: dict[uuid.UUID, list[str]] = {}
    for cid, name in rows:
        found.setdefault(cid, []).append(name)
    return found

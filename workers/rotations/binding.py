"""Binding a rotation to a PagerDuty schedule, and making it Manual again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    PagerDutySchedule,
    Rotation,
    RotationMode,
    utcnow,
)
from workers import events
from workers.core.access import Actor, Invalid, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import connected_connection
from workers.handoffs.duty_history import end_unmatched
from workers.handoffs.plan import discard_pending
from workers.handoffs.upcoming import discard_upcoming
from workers.rotations.people import rotation_people
from workers.rotations.views import rotation_missing
from workers.tasking.contract import (
    SYNC_CONNECTION,
)
from workers.tasking.enqueue import enqueue


def _rotation_for_update(
    session: Session, workspace_id: uuid.UUID, rotation_id: uuid.UUID
) -> Rotation:
    rotation = session.execute(
        select(Rotation)
        .where(Rotation.id == rotation_id, Rotation.workspace_id == workspace_id)
        .with_for_update()
    ).scalar_one_or_none()
    if rotation is None:
        raise rotation_missing()
    return rotation


@dataclass(frozen=True)
class Bound:
    rotation: Rotation
    task_id: str


def bind_rotation(
    session: Session, actor: Actor, rotation_id: uuid.UUID, schedule_id: str
) -> Bound:
    """Bind a rotation to a mirrored schedule of the connected account; sync to fill it."""
    require_manager(actor)
    schedule_id = (schedule_id or "").strip()
    if not schedule_id or len(schedule_id) > 64:
        raise Invalid("schedule_id must be a PagerDuty schedule id.", code="invalid_schedule_id")
    rotation = _rotation_for_update(session, actor.workspace_id, rotation_id)
    conn = connected_connection(session, actor.workspace_id)
    schedule = session.execute(
        select(PagerDutySchedule).where(
            PagerDutySchedule.connection_id == conn.id,
            PagerDutySchedule.pagerduty_id == schedule_id,
        )
    ).scalar_one_or_none()
    if schedule is None:
        raise Missing(
            "No such schedule in the connected PagerDuty account (as of the last sync).",
            code="schedule_not_found",
        )
    previous = rotation.pagerduty_schedule_id
    if previous != schedule_id:
        rotation.mode = RotationMode.PAGERDUTY
        rotation.pagerduty_schedule_id = schedule_id
        rotation.bound_at = utcnow()
        discard_pending(session, rotation_id=rotation.id)  # planned for the old schedule
        discard_upcoming(session, rotation_ids=[rotation.id])
        events.rotation_bound(
            session,
            workspace_id=actor.workspace_id,
            rotation_id=rotation.id,
            connection_id=conn.id,
            schedule_id=schedule_id,
            previous_schedule_id=previous,
            occurred_at=rotation.bound_at,
        )
    task_id = enqueue(
        session,
        SYNC_CONNECTION,
        workspace_id=actor.workspace_id,
        connection_id=conn.id,
        kind="binding",
    )
    audit(
        session,
        actor.workspace_id,
        AuditAction.ROTATION_BIND,
        actor_member_id=actor.member_id,
        rotation_id=rotation.id,
        schedule_id=schedule_id,
        previous_schedule_id=previous,
        connection_id=conn.id,
        task_id=task_id,
    )
    session.flush()
    return Bound(rotation, task_id)


def unbind_rotation(session: Session, actor: Actor, rotation_id: uuid.UUID) -> Rotation:
    """Make the rotation manual again, keeping its members and who is on duty."""
    require_manager(actor)
    rotation = _rotation_for_update(session, actor.workspace_id, rotation_id)
    if rotation.mode != RotationMode.MANUAL:
        previous = rotation.pagerduty_schedule_id
        rotation.make_manual()
        discard_pending(session, rotation_id=rotation.id)
        discard_upcoming(session, rotation_ids=[rotation.id])
        end_unmatched(session, [rotation.id], utcnow())  # members stay on duty, as above
        members, on_duty = rotation_people(session, [rotation.id])[rotation.id]
        events.rotation_made_manual(
            session,
            workspace_id=actor.workspace_id,
            rotation_id=rotation.id,
            connection_id=None,
            previous_schedule_id=previous,
            reason="unbound",
            members=members,
            on_duty=on_duty,
        )
        audit(
            session,
            actor.workspace_id,
            AuditAction.ROTATION_UNBIND,
            actor_member_id=actor.member_id,
            rotation_id=rotation.id,
            previous_schedule_id=previous,
        )
        session.flush()
    return rotation

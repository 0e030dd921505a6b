"""Binding a rotation to a PagerDuty schedule, and making it Manual again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
from models.workspace import MAX_ROTATION_SCHEDULES
from workers import events
from workers.core.access import Actor, Invalid, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import connected_connection
from workers.handoffs.bound import clear_schedules, schedules_of, set_schedules
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


def _schedule_ids(schedule_ids: str | Sequence[str]) -> list[str]:
    """The schedules asked for, checked: 1 to 10 distinct PagerDuty schedule ids."""
    asked = [schedule_ids] if isinstance(schedule_ids, str) else list(schedule_ids)
    ids = [(sid or "").strip() for sid in asked]
    if not ids or any(not sid or len(sid) > 64 for sid in ids):
        raise Invalid("schedule_id must be a PagerDuty schedule id.", code="invalid_schedule_id")
    if len(ids) > MAX_ROTATION_SCHEDULES:
        raise Invalid(
            f"A rotation can follow at most {MAX_ROTATION_SCHEDULES} schedules; "
            f"{len(ids)} were given.",
            code="too_many_schedules",
        )
    twice = sorted({sid for sid in ids if ids.count(sid) > 1})
    if twice:
        raise Invalid(
            f"Each schedule may be given once; repeated: {', '.join(twice)}.",
            code="duplicate_schedule_ids",
        )
    return ids


def bind_rotation(
    session: Session, actor: Actor, rotation_id: uuid.UUID, schedule_ids: str | Sequence[str]
) -> Bound:
    """Bind a rotation to 1 to 10 mirrored schedules of the connected account (one id: the
    single-schedule form); a re-bind replaces the set. Sync to fill it."""
    require_manager(actor)
    ids = _schedule_ids(schedule_ids)
    rotation = _rotation_for_update(session, actor.workspace_id, rotation_id)
    conn = connected_connection(session, actor.workspace_id)
    found = set(
        session.execute(
            select(PagerDutySchedule.pagerduty_id).where(
                PagerDutySchedule.connection_id == conn.id,
                PagerDutySchedule.pagerduty_id.in_(ids),
            )
        ).scalars()
    )
    unknown = [sid for sid in ids if sid not in found]
    if unknown:
        named = f" ({', '.join(unknown)})" if len(ids) > 1 else ""
        raise Missing(
            f"No such schedule{named} in the connected PagerDuty account (as of the last sync).",
            code="schedule_not_found",
        )
    before = schedules_of(session, [rotation.id]).get(rotation.id, [])
    previous = rotation.pagerduty_schedule_id
    if before != ids:
        rotation.mode = RotationMode.PAGERDUTY
        rotation.pagerduty_schedule_id = ids[0]  # the first; all of them in rotation_schedules
        rotation.bound_at = utcnow()
        session.flush()
        set_schedules(session, rotation.id, ids)
        discard_pending(session, rotation_id=rotation.id)  # planned for the old schedules
        discard_upcoming(session, rotation_ids=[rotation.id])
        events.rotation_bound(
            session,
            workspace_id=actor.workspace_id,
            rotation_id=rotation.id,
            connection_id=conn.id,
            schedule_id=ids[0],
            previous_schedule_id=previous,
            schedule_ids=ids,
            previous_schedule_ids=before,
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
        schedule_id=ids[0],
        schedule_ids=ids,
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
        followed = schedules_of(session, [rotation.id]).get(rotation.id, [])
        rotation.make_manual()
        session.flush()
        clear_schedules(session, [rotation.id])  # all of them, in this transaction
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
            previous_schedule_ids=followed,
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

"""Which schedules each bound rotation follows (1 to 10, ``rotation_schedules``), in one query.

A rotation bound to several schedules has them all in ``rotation_schedules`` (position 0 is
``rotations.pagerduty_schedule_id``). A bound rotation without rows there (bound by code that
set only the column) follows its one ``pagerduty_schedule_id``. The sync, the handoff loop,
binding and the views read a rotation's schedules here; rotations are below-the-feature data,
so this lives in handoffs, under every feature that asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.orm import Session

from models import Rotation, RotationMode, RotationSchedule

# A bound rotation's schedule ids, in order: its rows, else its one column.
_SCHEDULE = func.coalesce(RotationSchedule.schedule_pagerduty_id, Rotation.pagerduty_schedule_id)


def bound_schedule_pairs(workspace_id: uuid.UUID | None = None) -> Select[uuid.UUID, str]:
    """``(rotation id, schedule id, position)`` of every bound rotation (of ``workspace_id``,
    or of every workspace joined by the caller), one row per schedule it follows."""
    stmt = (
        select(Rotation.id, _SCHEDULE.label("schedule_id"))
        .outerjoin(RotationSchedule, RotationSchedule.rotation_id == Rotation.id)
        .where(Rotation.mode == RotationMode.PAGERDUTY, _SCHEDULE.is_not(None))
        .order_by(Rotation.id, func.coalesce(RotationSchedule.position, 0))
    )
    if workspace_id is not None:
        stmt = stmt.where(Rotation.workspace_id == workspace_id)
    return stmt


def schedule_column() -> Any:
    """The schedule id column of ``bound_schedule_pairs`` (for joins on it)."""
    return _SCHEDULE


def schedules_of(
    session: Session, rotation_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """Bound rotation id -> the schedule ids it follows, in order (one statement)."""
    out: dict[uuid.UUID, list[str]] = {}
    if not rotation_ids:
        return out
    for rid, sid in session.execute(
        bound_schedule_pairs().where(Rotation.id.in_(list(rotation_ids)))
    ):
        out.setdefault(rid, []).append(str(sid))
    return out


def workspace_schedules(session: Session, workspace_id: uuid.UUID) -> dict[uuid.UUID, list[str]]:
    """Every bound rotation of the workspace -> its schedule ids, in order (one statement)."""
    out: dict[uuid.UUID, list[str]] = {}
    for rid, sid in session.execute(bound_schedule_pairs(workspace_id)):
        out.setdefault(rid, []).append(str(sid))
    return out


def set_schedules(session: Session, rotation_id: uuid.UUID, schedule_ids: Sequence[str]) -> None:
    """The rotation follows exactly ``schedule_ids`` (in order) from now on."""
    clear_schedules(session, [rotation_id])
    session.execute(
        insert(RotationSchedule),
        [
            {"rotation_id": rotation_id, "schedule_pagerduty_id": sid, "position": pos}
            for pos, sid in enumerate(schedule_ids)
        ],
    )


def clear_schedules(session: Session, rotation_ids: Collection[uuid.UUID]) -> None:
    """The rotations follow no schedule (made Manual; or about to be re-bound)."""
    if rotation_ids:
        session.execute(
            delete(RotationSchedule)
            .where(RotationSchedule.rotation_id.in_(list(rotation_ids)))
            .execution_options(synchronize_session=False)
        )


__all__ = [
    "bound_schedule_pairs",
    "clear_schedules",
    "schedule_column",
    "schedules_of",
    "set_schedules",
    "workspace_schedules",
]

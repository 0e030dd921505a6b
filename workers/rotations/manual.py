"""Making bound rotations Manual because of their connection: a disconnect, or a confirmed
switch to another PagerDuty account whose schedules are not theirs. One code path, so both
keep the rotation's people and publish the same ``rotation.made_manual`` event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from models import Rotation
from workers import events
from workers.handoffs.bound import clear_schedules, schedules_of
from workers.handoffs.duty_history import end_unmatched
from workers.handoffs.upcoming import discard_upcoming
from workers.rotations.people import rotation_people


def revert_to_manual(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    rotations: Sequence[Rotation],
    reason: str,
    occurred_at: datetime,
) -> list[dict[str, str | None]]:
    """Make ``rotations`` (locked, bound) Manual, keeping their members and on-duty people, with
    one event each; returns ``[{id, name, schedule}]`` (the schedule each was bound to) for the
    caller's audit entry."""
    people = rotation_people(session, [r.id for r in rotations])
    followed = schedules_of(session, [r.id for r in rotations])
    # Their upcoming shifts are PagerDuty's no longer: a later binding starts a new baseline.
    discard_upcoming(session, rotation_ids=[r.id for r in rotations])
    reverted: list[dict[str, str | None]] = []
    for rotation in rotations:
        previous_schedule = rotation.pagerduty_schedule_id
        reverted.append(
            {"id": str(rotation.id), "name": rotation.name, "schedule": previous_schedule}
        )
        rotation.make_manual()
        members, on_duty = people.get(rotation.id, ([], set()))
        events.rotation_made_manual(
            session,
            workspace_id=workspace_id,
            rotation_id=rotation.id,
            connection_id=connection_id,
            previous_schedule_id=previous_schedule,
            reason=reason,
            members=members,
            on_duty=on_duty,
            occurred_at=occurred_at,
            previous_schedule_ids=followed.get(rotation.id, []),
        )
    # All of each rotation's schedules go with it, in this transaction (make_manual cleared the
    # first, the column).
    clear_schedules(session, [r.id for r in rotations])
    # Members stay on duty (their history intervals stay open); the PagerDuty users no member
    # matched were on call only through the binding.
    end_unmatched(session, [r.id for r in rotations], occurred_at)
    return reverted

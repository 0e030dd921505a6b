"""Set who is on duty for ONE bound rotation, with its events (the handoff loop's writer).

The sync's apply writes many rotations in batched statements (``workers.sync.apply``); a handoff
changes one rotation at a time and goes through here. Both emit the same events
(``events.rotation_people_changed``) in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from models import PagerDutyConnection, Rotation, RotationOnDuty
from workers import events
from workers.rotations.people import rotation_people


def set_on_duty(
    session: Session,
    conn: PagerDutyConnection,
    rotation_id: uuid.UUID,
    schedule_id: str,
    want: Iterable[uuid.UUID],
    *,
    now: datetime,
    cause: str,
) -> bool:
    """Make ``want`` the rotation's on-duty people; True when that changed anything.

    The caller holds the connection and rotation row locks (workers.rotations.locking).
    """
    want_set = set(want)
    members, have = rotation_people(session, [rotation_id])[rotation_id]
    if want_set == have:
        return False
    gone = have - want_set
    if gone:
        session.execute(
            delete(RotationOnDuty)
            .where(RotationOnDuty.rotation_id == rotation_id, RotationOnDuty.member_id.in_(gone))
            .execution_options(synchronize_session=False)
        )
    new = want_set - have
    if new:
        session.execute(
            insert(RotationOnDuty),
            [{"rotation_id": rotation_id, "member_id": mid, "since": now} for mid in new],
        )
    session.execute(
        update(Rotation)
        .where(Rotation.id == rotation_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    events.rotation_people_changed(
        session,
        conn,
        rotation_id,
        schedule_id,
        members,
        members,
        have,
        want_set,
        occurred_at=now,
        cause=cause,
    )
    return True

"""Who a rotation's members and on-duty people are (for the events that describe them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import RotationMember, RotationOnDuty


def rotation_people(
    session: Session, rotation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[list[uuid.UUID], set[uuid.UUID]]]:
    """For each rotation: its members in rotation order, and who is on duty (two SELECTs)."""
    people: dict[uuid.UUID, tuple[list[uuid.UUID], set[uuid.UUID]]] = {
        rid: ([], set()) for rid in rotation_ids
    }
    if not rotation_ids:
        return people
    for rid, mid in session.execute(
        select(RotationMember.rotation_id, RotationMember.member_id)
        .where(RotationMember.rotation_id.in_(rotation_ids))
        .order_by(RotationMember.rotation_id, RotationMember.position)
    ):
        people[rid][0].append(mid)
    for rid, mid in session.execute(
        select(RotationOnDuty.rotation_id, RotationOnDuty.member_id).where(
            RotationOnDuty.rotation_id.in_(rotation_ids)
        )
    ):
        people[rid][1].add(mid)
    return people

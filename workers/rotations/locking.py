"""THE lock order for a connection and its workspace's bound rotations.

Sync apply and disconnect both change a connection's bound rotations; so that they never
deadlock each other, every transaction that locks both takes

1. the connection row (``SELECT ... FOR UPDATE``), then
2. the workspace's rotations with ``mode = 'pagerduty'``, ordered by id (``FOR UPDATE``).

Code that needs both locks goes through these two functions, in this order.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from models import PagerDutyConnection, Rotation, RotationMode


def lock_connection(session: Session, connection_id: uuid.UUID) -> PagerDutyConnection | None:
    """Step 1: the connection row, re-read under a row lock (None when it is gone)."""
    return session.execute(
        select(PagerDutyConnection).where(PagerDutyConnection.id == connection_id).with_for_update()
    ).scalar_one_or_none()


def bound_rotations_for_update(workspace_id: uuid.UUID, *columns: Any) -> Select[Any]:
    """Step 2: the workspace's bound rotations (whole rows, or just ``columns``), locked in id
    order. Only after ``lock_connection``."""
    return (
        select(*(columns or (Rotation,)))
        .where(
            Rotation.workspace_id == workspace_id,
            Rotation.mode == RotationMode.PAGERDUTY,
        )
        .order_by(Rotation.id)
        .with_for_update()
    )

"""The connection row: the one home of its queries, and THE lock order.

Every feature finds a workspace's connection here (``live_connection``, ``connected_connection``)
and locks it here (``lock_connection``); it sits below the features so that none of them imports
another for it (docs/design.md, "Dependencies point one way").

THE lock order for a connection and its workspace's bound rotations. Sync apply and disconnect
both change a connection's bound rotations; so that they never deadlock each other, every
transaction that locks both takes

1. the connection row (``SELECT ... FOR UPDATE``), then
2. the workspace's rotations with ``mode = 'pagerduty'``, ordered by id (``FOR UPDATE``).

Code that needs both locks goes through these two functions, in this order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, Rotation, RotationMode
from workers.core.access import Conflict

# The admin's words when a request needs a connection (``workers.connections.messages`` holds
# them too, with every other sentence of the connect feature).
NOT_CONNECTED = "PagerDuty is not connected to this workspace."


def not_ready(status: str) -> str:
    return f"The PagerDuty connection is {status.replace('_', ' ')}, not connected."


@dataclass(frozen=True)
class Enqueued:
    """A request's answer: the connection it concerns and the task it enqueued."""

    connection: PagerDutyConnection
    task_id: str


def live_connection(
    session: Session, workspace_id: uuid.UUID, *, lock: bool = False
) -> PagerDutyConnection | None:
    stmt = select(PagerDutyConnection).where(
        PagerDutyConnection.workspace_id == workspace_id,
        PagerDutyConnection.status != ConnectionStatus.DISCONNECTED,
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def connected_connection(session: Session, workspace_id: uuid.UUID) -> PagerDutyConnection:
    """The live connection, which must be ``connected`` (else ``Conflict``)."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        raise Conflict(NOT_CONNECTED, code="not_connected")
    if conn.status != ConnectionStatus.CONNECTED:
        raise Conflict(not_ready(conn.status), code="connection_not_ready")
    return conn


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

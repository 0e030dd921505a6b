"""The API half of a disconnect: mark the connection ``disconnecting`` and enqueue the task.

The worker half (``workers.disconnect.transaction``) does the rest in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AuditAction, ConnectionStatus, Rotation, RotationMode
from workers.connections import messages
from workers.core.access import Actor, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import Enqueued, live_connection
from workers.disconnect.revoke import revoke_instructions
from workers.events import transition
from workers.tasking.contract import DISCONNECT
from workers.tasking.enqueue import enqueue


@dataclass(frozen=True)
class DisconnectRequested(Enqueued):
    # The rotations the disconnect makes Manual, and what the admin may do in PagerDuty.
    rotations_to_manual: list[dict[str, Any]]
    revoke_instructions: str


def request_disconnect(session: Session, actor: Actor) -> DisconnectRequested:
    """Ask for a disconnect: status ``disconnecting`` now, the task does the rest.

    Calling it again while disconnecting re-enqueues the (idempotent) task.
    """
    require_manager(actor)
    conn = live_connection(session, actor.workspace_id, lock=True)
    if conn is None:
        raise Missing(messages.NOT_CONNECTED, code="not_connected")
    already = conn.status == ConnectionStatus.DISCONNECTING
    if not already:
        transition(session, conn, ConnectionStatus.DISCONNECTING)
    task_id = enqueue(
        session,
        DISCONNECT,
        workspace_id=actor.workspace_id,
        connection_id=conn.id,
        actor_member_id=actor.member_id,
    )
    audit(
        session,
        actor.workspace_id,
        AuditAction.DISCONNECT_REQUESTED,
        actor_member_id=actor.member_id,
        connection_id=conn.id,
        repeated=already,
        task_id=task_id,
    )
    session.flush()
    bound = session.execute(
        select(Rotation.id, Rotation.name)
        .where(
            Rotation.workspace_id == actor.workspace_id,
            Rotation.mode == RotationMode.PAGERDUTY,
        )
        .order_by(func.lower(Rotation.name))
    ).all()
    return DisconnectRequested(
        conn,
        task_id,
        rotations_to_manual=[{"id": rid, "name": name} for rid, name in bound],
        revoke_instructions=revoke_instructions(
            conn.auth_method, conn.pagerduty_subdomain, conn.region
        ),
    )

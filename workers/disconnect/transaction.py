"""Disconnect a workspace from PagerDuty in one transaction (the worker half).

``disconnect`` is all or nothing: the connection row is locked, every PagerDuty-bound rotation of
the workspace becomes Manual (keeping its members and on-duty people), our copies of the
credentials, every OAuth login of the workspace and the mirrored PagerDuty data are deleted,
the connection becomes ``disconnected`` with a new generation (which fences off any sync still
running), and an audit event records who did it. See docs/sync-and-disconnect.md.

Nothing here calls PagerDuty: it has no API to revoke a credential (``workers.disconnect.revoke``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete

from models import (
    AuditAction,
    ConnectionStatus,
    Member,
    OAuthAuthorization,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    ScheduledHandoff,
    utcnow,
)
from workers.core.audit import audit
from workers.core.connection_rows import bound_rotations_for_update, lock_connection
from workers.core.db import affected_rows, transaction
from workers.core.ids import parse_uuid
from workers.events import transition
from workers.handoffs.upcoming import discard_upcoming
from workers.rotations.manual import revert_to_manual
from workers.tasking.outcomes import DisconnectOutcome

log = logging.getLogger(__name__)

AUDIT_ACTION = AuditAction.DISCONNECTED
MIRROR_TABLES = (PagerDutyOnCall, PagerDutyScheduleMember, PagerDutySchedule, PagerDutyUser)


# What the disconnect task answers (docs/tasks.md, generated from the enum).
D = DisconnectOutcome


@dataclass
class DisconnectResult:
    status: DisconnectOutcome
    connection_id: str
    rotations_made_manual: int = 0
    mirror_rows_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        # The word as a plain string: a result is JSON for other services.
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return {**fields, "status": self.status.value}


def disconnect_connection(
    connection_id: uuid.UUID | str, *, actor_member_id: uuid.UUID | str | None = None
) -> DisconnectResult:
    """Disconnect, idempotently: a connection already ``disconnected`` is left as it is."""
    cid = parse_uuid(connection_id)
    if cid is None:
        return DisconnectResult(status=D.NOT_FOUND, connection_id=str(connection_id))
    actor_id = parse_uuid(actor_member_id)
    now = utcnow()
    with transaction() as session:
        # The lock order (workers.core.connection_rows): connection row, then bound rotations.
        conn = lock_connection(session, cid)
        if conn is None:
            return DisconnectResult(status=D.NOT_FOUND, connection_id=str(cid))
        if conn.status == ConnectionStatus.DISCONNECTED:
            return DisconnectResult(status=D.ALREADY_DISCONNECTED, connection_id=str(cid))
        previous_status = conn.status
        if conn.status != ConnectionStatus.DISCONNECTING:
            transition(session, conn, ConnectionStatus.DISCONNECTING)

        # 1. Every bound rotation of the workspace becomes Manual, keeping its people. Only one
        #    live connection per workspace exists, so these are all this connection's.
        rotations = list(session.execute(bound_rotations_for_update(conn.workspace_id)).scalars())
        unbound = revert_to_manual(
            session,
            workspace_id=conn.workspace_id,
            connection_id=conn.id,
            rotations=rotations,
            reason="disconnected",
            occurred_at=now,
        )

        # 2. No credential, no OAuth login, no mirrored PagerDuty data is left. Every login of
        #    the workspace goes, whatever its state (pending, or consumed by a denial or an
        #    error, which kept its client secret and PKCE verifier): nothing needs one after a
        #    disconnect, and deleting a consumed one loses nothing (a replayed state is refused
        #    as unknown, the same answer as used). Only one live connection per workspace
        #    exists, so no other connection's login is among them.
        conn.clear_credentials()
        session.execute(
            delete(OAuthAuthorization)
            .where(OAuthAuthorization.workspace_id == conn.workspace_id)
            .execution_options(synchronize_session=False)
        )
        mirror_rows = 0
        for model in MIRROR_TABLES:
            mirror_rows += affected_rows(
                session.execute(
                    delete(model)
                    .where(model.connection_id == conn.id)
                    .execution_options(synchronize_session=False)
                )
            )

        # Planned handoffs would be fenced off by the new generation anyway; none are left.
        session.execute(
            delete(ScheduledHandoff)
            .where(ScheduledHandoff.connection_id == conn.id)
            .execution_options(synchronize_session=False)
        )
        # Nor any stored upcoming shifts (revert_to_manual dropped the bound rotations' own).
        discard_upcoming(session, connection_id=conn.id)

        # 3. Disconnected, under a new generation: any sync still running writes nothing.
        transition(session, conn, ConnectionStatus.DISCONNECTED)
        conn.generation += 1
        conn.disconnected_at = now
        conn.next_sync_at = None

        # 4. Who did it. An actor id that is not a member of this workspace is kept in the
        #    details only (a foreign key to nothing would roll the whole disconnect back).
        actor = session.get(Member, actor_id) if actor_id else None
        if actor is not None and actor.workspace_id != conn.workspace_id:
            actor = None
        details: dict[str, Any] = {
            "connection_id": str(conn.id),
            "previous_status": previous_status,
            "auth_method": conn.auth_method,
            "rotations_made_manual": unbound,
            "mirror_rows_deleted": mirror_rows,
        }
        if actor_member_id is not None and actor is None:
            details["unknown_actor_member_id"] = str(actor_member_id)[:64]
        audit(
            session,
            conn.workspace_id,
            AUDIT_ACTION,
            actor_member_id=actor.id if actor else None,
            at=now,
            **details,
        )
    log.info(
        "disconnected from PagerDuty",
        extra={"connection_id": str(cid), "rotations_made_manual": len(unbound)},
    )
    return DisconnectResult(
        status=D.DISCONNECTED,
        connection_id=str(cid),
        rotations_made_manual=len(unbound),
        mirror_rows_deleted=mirror_rows,
    )

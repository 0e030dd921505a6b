"""Sync now: a manual sync asked for by a workspace admin (API, panel) or an operator (rrpd)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from models import AuditAction, PagerDutyConnection, utcnow
from models.connection import SYNC_NOW_AFTER
from workers.core.access import Actor, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import Enqueued, connected_connection
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import enqueue


def enqueue_manual_sync(
    session: Session,
    conn: PagerDutyConnection,
    *,
    actor_member_id: Any = None,
    actor: str | None = None,
    **details: Any,
) -> str:
    """Enqueue ``pagerduty.sync_connection(kind="manual")`` after commit, with its audit row.

    The request is also a row fact (``sync_requested_at`` and its deadline), so a lost message
    is driven again by the ``deadlines`` loop until a run that started after it is recorded.
    """
    now = utcnow()
    conn.sync_requested_at = now
    conn.expect_work(now, SYNC_NOW_AFTER)
    task_id = enqueue(
        session,
        SYNC_CONNECTION,
        workspace_id=conn.workspace_id,
        connection_id=conn.id,
        kind="manual",
    )
    audit(
        session,
        conn.workspace_id,
        AuditAction.SYNC_REQUESTED,
        actor_member_id=actor_member_id,
        actor=actor,
        connection_id=conn.id,
        task_id=task_id,
        **details,
    )
    return task_id


def sync_now(session: Session, actor: Actor) -> Enqueued:
    """The API's "Sync now": Primary Owner or Admin, and the connection must be connected."""
    require_manager(actor)
    conn = connected_connection(session, actor.workspace_id)
    return Enqueued(conn, enqueue_manual_sync(session, conn, actor_member_id=actor.member_id))

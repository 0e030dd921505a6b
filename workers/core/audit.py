"""The one way an audit row is written: who did what to which workspace, in plain values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import AuditEvent


def audit(
    session: Session,
    workspace_id: uuid.UUID,
    action: str,
    *,
    actor_member_id: uuid.UUID | None = None,
    actor: str | None = None,
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an ``AuditEvent`` to the caller's transaction (written when it commits).

    ``actor`` is ``"member"`` when a member acted (``actor_member_id``), otherwise ``"system"``,
    unless the caller names another (``"operator"`` for ``rrpd``). UUIDs in ``details`` are
    stored as strings; details never hold a secret.
    """
    event = AuditEvent(
        workspace_id=workspace_id,
        actor_member_id=actor_member_id,
        actor=actor or ("member" if actor_member_id else "system"),
        action=action,
        details={k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in details.items()},
    )
    if at is not None:
        event.created_at = at
    session.add(event)
    return event


# --- reading the trail (the API's GET /v1/workspaces/{W}/audit and `rrpd audit`) -------------

MAX_PAGE = 200


def audit_trail(
    session: Session,
    workspace_id: uuid.UUID,
    *,
    limit: int = 50,
    before: datetime | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """The workspace's audit events, newest first: ``limit`` of them (at most ``MAX_PAGE``)
    older than ``before``, optionally only actions starting with ``action``."""
    from sqlalchemy import select

    from models import Member

    query = (
        select(AuditEvent, Member.display_name, Member.email)
        .outerjoin(Member, Member.id == AuditEvent.actor_member_id)
        .where(AuditEvent.workspace_id == workspace_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    if before is not None:
        query = query.where(AuditEvent.created_at < before)
    if action:
        escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditEvent.action.like(f"{escaped}%", escape="\\"))
    return [
        {
            "id": event.id,
            "at": event.created_at,
            "action": event.action,
            "actor": event.actor,
            "actor_member_id": event.actor_member_id,
            "actor_name": name,
            "actor_email": email,
            "details": event.details or {},
        }
        for event, name, email in session.execute(query)
    ]

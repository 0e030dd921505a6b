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

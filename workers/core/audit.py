"""The one way an audit row is written: who did what to which workspace, in plain values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import AuditEvent

# Every action the trail may hold, and what it records; docs/api.md lists the same (a test
# compares them) and ``audit`` refuses any other, so a renamed action cannot slip by.
ACTIONS: dict[str, str] = {
    "pagerduty.connect.api_key": "a member entered an API key (`pending: true` beside a live one)",
    "pagerduty.connect.oauth_started": "a member started an OAuth login",
    "pagerduty.connect.oauth": "PagerDuty sent the browser back with a code; the exchange runs",
    "pagerduty.connect.oauth_denied": "the member declined on PagerDuty's consent page",
    "pagerduty.connect.oauth_failed": "PagerDuty answered the login with an error, or its starter "
    "may no longer connect",
    "pagerduty.connected": "the check passed: the connection is `connected`",
    "pagerduty.invalid": "the check failed or could not finish: the connection is `invalid`",
    "pagerduty.pending.accepted": "a new credential checked beside the live one replaced it",
    "pagerduty.pending.rejected": "PagerDuty refused the new credential; the live one stays",
    "pagerduty.pending.lost": "the new credential could not be checked in time; the live one stays",
    "pagerduty.pending.account_change": "the new key is of another PagerDuty account: it waits "
    "for the admin",
    "pagerduty.pending.account_change_confirmed": "the admin confirmed the other account",
    "pagerduty.pending.account_change_expired": "the other account's key waited a day and was "
    "forgotten",
    "pagerduty.pending.discarded": "the admin discarded the new credential",
    "pagerduty.sync.requested": "a member (or an operator) asked for a sync now",
    "pagerduty.disconnect.requested": "a member asked to disconnect",
    "pagerduty.disconnected": "the disconnect ran: rotations Manual, credentials and copies gone",
    "rotation.pagerduty.bind": "a member bound a rotation to a PagerDuty schedule",
    "rotation.pagerduty.unbind": "a member made a bound rotation Manual",
    "rotation.pagerduty.made_manual": "confirming another account made a bound rotation Manual "
    "(its schedule is not in that account)",
}


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
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to workers.core.audit.ACTIONS")
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

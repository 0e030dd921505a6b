"""The one way an audit row is written: who did what to which workspace, in plain values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import AuditAction, AuditEvent

# What each action the trail may hold records (the actions: ``models.AuditAction``, stored as
# their values); docs/api.md lists the same (a test compares them) and ``audit`` takes only
# ``AuditAction`` members (plain strings are refused), so a renamed action cannot slip by.
A = AuditAction
ACTIONS: dict[AuditAction, str] = {
    A.CONNECT_API_KEY: "a member entered an API key (`pending: true` beside a live one)",
    A.CONNECT_OAUTH_STARTED: "a member started an OAuth login",
    A.CONNECT_OAUTH: "PagerDuty sent the browser back with a code; the exchange runs",
    A.CONNECT_OAUTH_DENIED: "the member declined on PagerDuty's consent page",
    A.CONNECT_OAUTH_FAILED: "PagerDuty answered the login with an error, or its starter "
    "may no longer connect",
    A.CONNECTED: "the check passed: the connection is `connected`",
    A.INVALID: "the check failed or could not finish: the connection is `invalid`",
    A.PENDING_ACCEPTED: "a new credential checked beside the live one replaced it",
    A.PENDING_REJECTED: "PagerDuty refused the new credential; the live one stays",
    A.PENDING_LOST: "the new credential could not be checked in time; the live one stays",
    A.PENDING_ACCOUNT_CHANGE: "the new key is of another PagerDuty account: it waits for the admin",
    A.PENDING_ACCOUNT_CHANGE_CONFIRMED: "the admin confirmed the other account",
    A.PENDING_ACCOUNT_CHANGE_EXPIRED: "the other account's key waited a day and was forgotten",
    A.PENDING_DISCARDED: "the admin discarded the new credential",
    A.SYNC_REQUESTED: "a member (or an operator) asked for a sync now",
    A.DISCONNECT_REQUESTED: "a member asked to disconnect",
    A.DISCONNECTED: "the disconnect ran: rotations Manual, credentials and copies gone",
    A.ROTATION_BIND: "a member bound a rotation to PagerDuty schedules (one, or up to 10)",
    A.ROTATION_UNBIND: "a member made a bound rotation Manual",
    A.ROTATION_MADE_MANUAL: "confirming another account made a bound rotation Manual "
    "(a schedule it follows is not in that account)",
    A.WORKSPACE_TIME_ZONE: "an admin changed the workspace's time zone (`previous`, "
    "`time_zone`), which the on-call report counts business hours and weekends in",
}


def audit(
    session: Session,
    workspace_id: uuid.UUID,
    action: AuditAction,
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
    given: object = action  # checked at run time too: not every caller is type-checked
    if not isinstance(given, AuditAction):
        # Only the enum's members: a plain string, even one equal to an action's value, is how
        # a misspelt or renamed action would reach the trail unnoticed.
        if given in ACTIONS:
            raise TypeError(f"audit action {given!r} must be passed as its models.AuditAction")
        raise ValueError(f"unknown audit action {given!r}: add it to models.AuditAction")
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
    from sqlalchemy import String, select, type_coerce

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
        # A prefix, not an action: compared as the stored text (the enum refuses partial words).
        prefix = type_coerce(AuditEvent.action, String).like(f"{escaped}%", escape="\\")
        query = query.where(prefix)
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

"""Installing credentials, and connecting with an API key (the live connection itself:
``workers.core.connection_rows``).

Plain functions over the caller's ``Session`` (the API opens one transaction per request; tests
call them directly): each checks what it needs (role, workspace, state), writes its rows and an
audit event, and enqueues work with ``workers.tasking.enqueue.enqueue`` (published only after
the caller's transaction commits). They never commit. Failures are
``workers.core.access.ServiceError``s with words for the admin (``workers.connections.messages``);
no message, audit detail or task argument ever holds a secret.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    Region,
    Workspace,
    utcnow,
)
from workers import events
from workers.connections import messages, pending
from workers.core.access import Actor, Conflict, Invalid, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import Enqueued, live_connection
from workers.tasking.contract import (
    VALIDATE_API_KEY,
)
from workers.tasking.enqueue import enqueue

_API_KEY_RE = re.compile(r"^[\x21-\x7e]{16,128}$")


def normalize_api_key(raw: str) -> str:
    """Strip and check an API key's shape; the message never repeats the key."""
    key = (raw or "").strip()
    if not _API_KEY_RE.match(key):
        raise Invalid(messages.BAD_API_KEY, code="invalid_api_key")
    return key


def normalize_region(raw: str | None) -> Region:
    region = (raw or Region.US).strip().lower()
    if region not in {r.value for r in Region}:
        raise Invalid(messages.BAD_REGION, code="invalid_region")
    return Region(region)


def lock_workspace(session: Session, workspace_id: uuid.UUID) -> Workspace:
    """Serialize credential changes per workspace, so two first connects cannot both insert.

    FOR NO KEY UPDATE (``key_share=True``) does not block rows that merely reference the
    workspace (workers inserting audit events or task records), so it cannot deadlock them.
    """
    ws = session.execute(
        select(Workspace).where(Workspace.id == workspace_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if ws is None:
        raise Missing(messages.NO_WORKSPACE, code="workspace_not_found")
    return ws


def install_credentials(
    session: Session,
    workspace_id: uuid.UUID,
    *,
    actor_member_id: uuid.UUID | None,
    auth_method: AuthMethod,
    region: Region,
    api_key: str | None = None,
    oauth_client_id: str | None = None,
    oauth_client_secret: str | None = None,
) -> tuple[PagerDutyConnection, bool]:
    """Create the live connection or replace its credentials; status ``validating``.

    Returns (connection, replaced). Replacing bumps ``generation`` so tasks started with the old
    credentials cannot write. Account facts (account id, subdomain) are kept until the
    validation task sees the new credentials, so it can tell whether the account changed.
    """
    lock_workspace(session, workspace_id)
    conn = live_connection(session, workspace_id, lock=True)
    now = utcnow()
    replaced = conn is not None
    previous = conn.status if conn is not None else None
    if conn is None:
        conn = PagerDutyConnection(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            status=ConnectionStatus.VALIDATING,
            generation=1,
            status_changed_at=now,
        )
        conn.expect_work(now)  # the validation task's deadline (a new row skips transition)
        session.add(conn)
    else:
        if conn.status == ConnectionStatus.DISCONNECTING:
            raise Conflict(messages.DISCONNECTING, code="disconnecting")
        # The status event is written below, once the new credentials' facts are set.
        conn.transition(ConnectionStatus.VALIDATING)  # drops any pending credential
        conn.generation = pending.next_generation(conn)
        # Our copies of the old credentials go at once. PagerDuty offers no API to revoke OAuth
        # tokens; they die on their own (access: a day, refresh: 30 days unused).
        conn.clear_credentials()
        # A login of the old credentials (its code, verifier, client secret, kept tokens) is
        # superseded: its exchange would be stale, and nothing else needs it.
        session.execute(
            delete(OAuthAuthorization)
            .where(OAuthAuthorization.connection_id == conn.id)
            .execution_options(synchronize_session=False)
        )
        conn.token_refreshed_at = None
        conn.granted_scopes = None
        conn.key_level = None
    conn.auth_method = auth_method
    conn.region = region
    conn.api_key = api_key
    conn.oauth_client_id = oauth_client_id
    conn.oauth_client_secret = oauth_client_secret
    conn.connected_by_member_id = actor_member_id
    conn.connected_at = now
    conn.last_error = None
    conn.last_error_at = None
    conn.notice = None
    conn.consecutive_sync_failures = 0
    session.flush()
    events.connection_status_changed(session, conn, previous)
    return conn, replaced


def set_api_key(session: Session, actor: Actor, api_key: str, region: str = "us") -> Enqueued:
    """Connect with an API key, or replace the key of the live connection ("Edit API key").

    Over a ``connected`` connection the new key is stored as its pending credential and checked
    while the live key keeps serving (``workers.connections.pending``); over any other live
    state it replaces the credentials directly.
    """
    require_manager(actor)
    key = normalize_api_key(api_key)
    region = normalize_region(region)
    lock_workspace(session, actor.workspace_id)
    live = live_connection(session, actor.workspace_id, lock=True)
    if live is not None and live.status == ConnectionStatus.CONNECTED:
        # New credentials never break working ones: checked beside them, swapped in if proven.
        generation = pending.stage_api_key(session, live, key, region)
        task_id = enqueue(
            session,
            VALIDATE_API_KEY,
            workspace_id=actor.workspace_id,
            connection_id=live.id,
            generation=generation,
        )
        audit(
            session,
            actor.workspace_id,
            AuditAction.CONNECT_API_KEY,
            actor_member_id=actor.member_id,
            connection_id=live.id,
            region=region,
            generation=generation,
            replaced=True,
            pending=True,
            task_id=task_id,
        )
        return Enqueued(live, task_id)
    conn, replaced = install_credentials(
        session,
        actor.workspace_id,
        actor_member_id=actor.member_id,
        auth_method=AuthMethod.API_KEY,
        region=region,
        api_key=key,
    )
    task_id = enqueue(
        session,
        VALIDATE_API_KEY,
        workspace_id=actor.workspace_id,
        connection_id=conn.id,
        generation=conn.generation,
    )
    audit(
        session,
        actor.workspace_id,
        AuditAction.CONNECT_API_KEY,
        actor_member_id=actor.member_id,
        connection_id=conn.id,
        region=region,
        generation=conn.generation,
        replaced=replaced,
        task_id=task_id,
    )
    return Enqueued(conn, task_id)

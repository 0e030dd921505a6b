"""A replacement API key over a connected connection: checked while the live key keeps serving.

``set_api_key`` over a ``connected`` connection stores the new key as the connection's
*pending* credential (encrypted) instead of replacing the live one; the status stays
``connected`` and syncs go on. Its check is the ordinary ``pagerduty.validate_api_key`` task
with ``generation`` = ``pending_generation`` (the generation the key gets if proven), so the
deadlines loop and redeliveries drive it with the same arguments, fenced like any check. Only a
proven key replaces the live one (generation + 1 and a sync, as a successful connect); any other
outcome leaves the connection as it was and tells the admin so (``pending_status``,
``pending_message``). These functions run in the caller's transaction, the connection row
already locked (``workers.core.connection_rows.lock_connection``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    AuthMethod,
    ConnectionStatus,
    KeyLevel,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    Region,
    utcnow,
)
from models.connection import PENDING_CHECK_AFTER
from workers.connections import messages
from workers.core import metrics
from workers.core.access import Actor, Missing, require_manager
from workers.core.audit import audit
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import enqueue

log = logging.getLogger(__name__)

# The audit action of each way a pending check ends (``record_ended``).
ENDED_ACTIONS = {
    PendingStatus.REJECTED: AuditAction.PENDING_REJECTED,
    PendingStatus.LOST: AuditAction.PENDING_LOST,
    PendingStatus.ACCOUNT_CHANGE: AuditAction.PENDING_ACCOUNT_CHANGE,
}


def next_generation(conn: PagerDutyConnection) -> int:
    """Above both the live generation and any pending one handed out before, so a late check
    of an earlier credential is never taken for a later one."""
    return max(conn.generation, conn.pending_generation or 0) + 1


def stage_api_key(session: Session, conn: PagerDutyConnection, key: str, region: Region) -> int:
    """Keep ``key`` as the pending credential of the (locked, connected) connection; returns
    the generation its check runs under. A credential already pending is superseded."""
    now = utcnow()
    forget_logins(session, conn)  # an OAuth login pending before is superseded
    conn.pending_api_key = key
    conn.pending_auth_method = AuthMethod.API_KEY
    conn.pending_region = region
    conn.pending_status = PendingStatus.CHECKING
    conn.pending_generation = next_generation(conn)
    conn.pending_message = messages.PENDING_CHECKING
    conn.pending_since = now
    conn.pending_account = None  # a superseded account change's plan is not this key's
    expect_check(conn, now)
    session.flush()
    return conn.pending_generation


def expect_check(conn: PagerDutyConnection, now: datetime, after: float | None = None) -> None:
    conn.pending_drive_at = now + timedelta(seconds=PENDING_CHECK_AFTER if after is None else after)
    conn.pending_drives = 0


def is_checking(conn: PagerDutyConnection | None, generation: int) -> bool:
    """``generation`` is the check of the credential pending on this connection right now."""
    return (
        conn is not None
        and conn.status == ConnectionStatus.CONNECTED
        and conn.pending_status == PendingStatus.CHECKING
        and conn.pending_generation == generation
        and conn.generation < generation
    )


def record_proven(
    session: Session,
    conn: PagerDutyConnection,
    *,
    key_level: str | None,
    subdomain: str | None,
    region: Region,
    notice: str | None,
) -> None:
    """Swap the proven key in: the live credentials go, generation moves to the pending one
    (tasks of the old key stop writing) and a sync starts, as after a first connect."""
    assert conn.pending_generation is not None
    key = conn.pending_api_key
    assert key
    conn.clear_credentials()
    # A login of the old credentials is superseded like on a direct change.
    forget_logins(session, conn)
    conn.auth_method = AuthMethod.API_KEY
    conn.api_key = key
    conn.oauth_client_id = None
    conn.token_refreshed_at = None
    conn.granted_scopes = None
    conn.key_level = KeyLevel(key_level) if key_level else None
    conn.region = region
    if subdomain:
        conn.pagerduty_subdomain = subdomain
    serve_pending(session, conn, notice)


def serve_pending(session: Session, conn: PagerDutyConnection, notice: str | None) -> None:
    """The tail of a swap, the proven credentials already set on ``conn``: generation moves to
    the pending one (tasks of the old credentials stop writing) and a sync starts."""
    assert conn.pending_generation is not None
    conn.generation = conn.pending_generation
    conn.notice = notice
    conn.connected_at = utcnow()
    conn.next_sync_at = None
    conn.consecutive_sync_failures = 0
    conn.clear_pending()
    audit(
        session,
        conn.workspace_id,
        AuditAction.PENDING_ACCEPTED,
        connection_id=conn.id,
        auth_method=conn.auth_method,
        region=conn.region,
        subdomain=conn.pagerduty_subdomain,
        generation=conn.generation,
    )
    enqueue(
        session,
        SYNC_CONNECTION,
        workspace_id=conn.workspace_id,
        connection_id=conn.id,
        kind="initial",
    )
    metrics.incr("rrpd_connection_checks_total", kind="pending", outcome="connected")
    log.info("pending credential swapped in", extra={"connection_id": str(conn.id)})


def discard(session: Session, actor: Actor) -> PagerDutyConnection:
    """The admin's "discard": forget the pending credential (a check still running finds it
    gone and ends ``stale``). ``Missing`` when there is none."""
    require_manager(actor)
    conn = session.execute(
        select(PagerDutyConnection)
        .where(
            PagerDutyConnection.workspace_id == actor.workspace_id,
            PagerDutyConnection.status != ConnectionStatus.DISCONNECTED,
        )
        .with_for_update()
    ).scalar_one_or_none()
    if conn is None or conn.pending_status is None:
        raise Missing(messages.NO_PENDING, code="no_pending")
    previous = conn.pending_status
    forget_logins(session, conn)
    conn.clear_pending()
    audit(
        session,
        actor.workspace_id,
        AuditAction.PENDING_DISCARDED,
        actor_member_id=actor.member_id,
        connection_id=conn.id,
        pending_status=previous,
    )
    session.flush()
    return conn


def record_ended(
    session: Session, conn: PagerDutyConnection, status: PendingStatus, message: str
) -> None:
    """End the pending check without touching the live credentials: the key goes (it is of no
    use any more), the outcome stays for the admin to read. A key of another account stays
    until the admin decides (workers.connections.account_change); a pending OAuth login's row
    (client secret, verifier, tokens) goes whatever the outcome."""
    if status is not PendingStatus.ACCOUNT_CHANGE:
        conn.pending_api_key = None
    forget_logins(session, conn)
    conn.pending_status = status
    conn.pending_message = message
    conn.pending_drive_at = None
    conn.pending_drives = 0
    audit(
        session,
        conn.workspace_id,
        ENDED_ACTIONS[status],
        connection_id=conn.id,
        generation=conn.pending_generation,
        reason=message,
    )
    metrics.incr("rrpd_connection_checks_total", kind="pending", outcome=status.value)
    log.info("pending credential %s", status.value, extra={"connection_id": str(conn.id)})


def forget_logins(session: Session, conn: PagerDutyConnection) -> None:
    """Delete the login rows attached to the (locked, connected) connection: on a connected
    connection only a pending OAuth login is attached, so this ends it with its secrets."""
    session.execute(
        delete(OAuthAuthorization)
        .where(OAuthAuthorization.connection_id == conn.id)
        .execution_options(synchronize_session=False)
    )

"""Disconnect a workspace from PagerDuty in one transaction, then revoke OAuth tokens best-effort.

``disconnect`` is all or nothing: the connection row is locked, every PagerDuty-bound rotation of
the workspace becomes Manual (keeping its members and on-duty people), OAuth tokens are queued
for revocation (``TokenRevocation`` rows, still encrypted), credentials, pending OAuth logins and
the mirrored PagerDuty data are deleted, the connection becomes ``disconnected`` with a new
generation (which fences off any sync still running), and an audit event records who did it.
Only after that commits is ``pagerduty.revoke_tokens`` published. See
docs/sync-and-disconnect.md.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from models import (
    AuditEvent,
    AuthMethod,
    ConnectionStatus,
    Member,
    OAuthAuthorization,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Rotation,
    RotationMode,
    TokenRevocation,
    utcnow,
)
from workers import crypto
from workers.db import transaction
from workers.enqueue import REVOKE_TOKENS, enqueue
from workers.pagerduty import oauth
from workers.settings import get_settings

log = logging.getLogger(__name__)

AUDIT_ACTION = "pagerduty.disconnected"
# A revocation that failed this many times is dropped (the access token dies within a day; the
# refresh token can no longer be used by us: the stored copies are gone with the row).
MAX_REVOKE_ATTEMPTS = 8
MIRROR_TABLES = (PagerDutyOnCall, PagerDutyScheduleMember, PagerDutySchedule, PagerDutyUser)


@dataclass
class DisconnectResult:
    status: str  # disconnected | already_disconnected | not_found
    connection_id: str
    rotations_made_manual: int = 0
    token_revocations: int = 0
    mirror_rows_deleted: int = 0
    revoke_task_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class RevokeResult:
    connection_id: str
    revoked: int = 0
    failed: int = 0
    given_up: int = 0
    remaining: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_revocations(session: Session, conn: PagerDutyConnection) -> int:
    """Queue the connection's OAuth tokens for revocation, in the caller's transaction.

    Called wherever our copies of tokens are dropped (disconnect, credentials replaced), so
    a crash can neither lose the revocation nor leave a usable token behind unrecorded.
    """
    if not (
        conn.auth_method == AuthMethod.OAUTH.value
        and conn.oauth_client_id
        and conn.oauth_client_secret_encrypted
    ):
        return 0
    count = 0
    # The refresh token first: revoking it ends the grant (RFC 7009 2.1).
    for token in (conn.refresh_token_encrypted, conn.access_token_encrypted):
        if token:
            session.add(
                TokenRevocation(
                    connection_id=conn.id,
                    client_id=conn.oauth_client_id,
                    client_secret_encrypted=conn.oauth_client_secret_encrypted,
                    token_encrypted=token,
                )
            )
            count += 1
    return count


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def disconnect(
    connection_id: uuid.UUID | str, *, actor_member_id: uuid.UUID | str | None = None
) -> DisconnectResult:
    """Disconnect, idempotently: a connection already ``disconnected`` is left as it is."""
    cid = _as_uuid(connection_id)
    if cid is None:
        return DisconnectResult(status="not_found", connection_id=str(connection_id))
    actor_id = _as_uuid(actor_member_id)
    now = utcnow()
    with transaction() as session:
        conn = session.execute(
            select(PagerDutyConnection).where(PagerDutyConnection.id == cid).with_for_update()
        ).scalar_one_or_none()
        if conn is None:
            return DisconnectResult(status="not_found", connection_id=str(cid))
        if conn.status == ConnectionStatus.DISCONNECTED.value:
            return DisconnectResult(status="already_disconnected", connection_id=str(cid))
        previous_status = conn.status
        if conn.status != ConnectionStatus.DISCONNECTING.value:
            conn.transition(ConnectionStatus.DISCONNECTING)

        # 1. Every bound rotation of the workspace becomes Manual, keeping its people. Only one
        #    live connection per workspace exists, so these are all this connection's.
        rotations = list(
            session.execute(
                select(Rotation)
                .where(
                    Rotation.workspace_id == conn.workspace_id,
                    Rotation.mode == RotationMode.PAGERDUTY.value,
                )
                .order_by(Rotation.id)
                .with_for_update()
            ).scalars()
        )
        unbound = [
            {"id": str(r.id), "name": r.name, "schedule": r.pagerduty_schedule_id}
            for r in rotations
        ]
        for rotation in rotations:
            rotation.make_manual()

        # 2. OAuth tokens to revoke, written in this transaction (still encrypted).
        revocations = record_revocations(session, conn)

        # 3. No credential, no pending login, no mirrored PagerDuty data is left.
        conn.clear_credentials()
        session.execute(
            delete(OAuthAuthorization)
            .where(
                OAuthAuthorization.workspace_id == conn.workspace_id,
                or_(
                    OAuthAuthorization.connection_id == conn.id,
                    (OAuthAuthorization.connection_id.is_(None))
                    & (OAuthAuthorization.consumed_at.is_(None)),
                ),
            )
            .execution_options(synchronize_session=False)
        )
        mirror_rows = 0
        for model in MIRROR_TABLES:
            mirror_rows += (
                session.execute(
                    delete(model)
                    .where(model.connection_id == conn.id)
                    .execution_options(synchronize_session=False)
                ).rowcount
                or 0
            )

        # 4. Disconnected, under a new generation: any sync still running writes nothing.
        conn.transition(ConnectionStatus.DISCONNECTED)
        conn.generation += 1
        conn.disconnected_at = now
        conn.next_sync_at = None

        # 5. Who did it. An actor id that is not a member of this workspace is kept in the
        #    details only (a foreign key to nothing would roll the whole disconnect back).
        actor = session.get(Member, actor_id) if actor_id else None
        if actor is not None and actor.workspace_id != conn.workspace_id:
            actor = None
        details: dict[str, Any] = {
            "connection_id": str(conn.id),
            "previous_status": previous_status,
            "auth_method": conn.auth_method,
            "rotations_made_manual": unbound,
            "token_revocations": revocations,
            "mirror_rows_deleted": mirror_rows,
        }
        if actor_member_id is not None and actor is None:
            details["unknown_actor_member_id"] = str(actor_member_id)[:64]
        session.add(
            AuditEvent(
                workspace_id=conn.workspace_id,
                actor_member_id=actor.id if actor else None,
                actor="member" if actor else "system",
                action=AUDIT_ACTION,
                details=details,
                created_at=now,
            )
        )
        revoke_task_id = (
            enqueue(session, REVOKE_TOKENS, connection_id=conn.id) if revocations else None
        )
    log.info(
        "disconnected from PagerDuty",
        extra={"connection_id": str(cid), "rotations_made_manual": len(unbound)},
    )
    return DisconnectResult(
        status="disconnected",
        connection_id=str(cid),
        rotations_made_manual=len(unbound),
        token_revocations=revocations,
        mirror_rows_deleted=mirror_rows,
        revoke_task_id=revoke_task_id,
    )


def revoke_tokens(
    connection_id: uuid.UUID | str, *, max_attempts: int = MAX_REVOKE_ATTEMPTS, **revoke_kwargs: Any
) -> RevokeResult:
    """Revoke every queued token of a connection at PagerDuty, best effort.

    Each row is deleted once PagerDuty accepts it (RFC 7009: an unknown token is a success too),
    or after ``max_attempts`` failures. No transaction is held open across the HTTP call; two
    revokers racing on one row both call PagerDuty (harmless) and one deletes it.
    """
    cid = _as_uuid(connection_id)
    result = RevokeResult(connection_id=str(connection_id))
    if cid is None:
        return result
    settings = get_settings()
    with transaction() as session:
        rows = session.execute(
            select(
                TokenRevocation.id,
                TokenRevocation.client_id,
                TokenRevocation.client_secret_encrypted,
                TokenRevocation.token_encrypted,
                TokenRevocation.attempts,
            )
            .where(TokenRevocation.connection_id == cid)
            .order_by(TokenRevocation.created_at)
        ).all()
    for row in rows:
        try:
            secret = crypto.decrypt(row.client_secret_encrypted)
            token = crypto.decrypt(row.token_encrypted)
        except crypto.DecryptionError:
            ok, error = False, "the stored token cannot be decrypted with the configured keys"
            attempts_left = 0
        else:
            ok = oauth.revoke(
                settings.pagerduty_identity_url,
                row.client_id,
                secret,
                token,
                timeout=min(settings.pagerduty_timeout_seconds, 10.0),
                **revoke_kwargs,
            )
            error = None if ok else "PagerDuty did not confirm the revocation"
            attempts_left = max_attempts - (row.attempts + 1)
        with transaction() as session:
            if ok or attempts_left <= 0:
                session.execute(delete(TokenRevocation).where(TokenRevocation.id == row.id))
            else:
                session.execute(
                    update(TokenRevocation)
                    .where(TokenRevocation.id == row.id)
                    .values(attempts=TokenRevocation.attempts + 1, last_error=error)
                )
        if ok:
            result.revoked += 1
        elif attempts_left <= 0:
            result.given_up += 1
            log.warning(
                "gave up revoking a PagerDuty token: %s", error, extra={"connection_id": str(cid)}
            )
        else:
            result.failed += 1
    result.remaining = result.failed
    return result

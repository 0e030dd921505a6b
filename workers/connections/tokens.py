"""A usable PagerDuty credential for a connection, refreshing OAuth tokens when needed.

Refresh is single-flight across every worker process and machine: a Redis lock keeps the crowd
from queueing on the database (efficiency), then the connection row is re-read under a row lock
(correctness) and the refresh happens only if the token is still the one the caller saw. The
new access and refresh tokens are committed before anyone uses them: PagerDuty rotates the
refresh token on every refresh, so a refresh whose result is lost locks the customer out.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Text, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import AuthMethod, ConnectionStatus, PagerDutyConnection, utcnow
from models.connection import statuses
from workers.connections import messages
from workers.core import crypto, locks, metrics
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.events import transition
from workers.pagerduty import oauth
from workers.pagerduty.errors import InvalidClient, InvalidCredentials, InvalidGrant
from workers.pagerduty.factory import OAuthFactory, pagerduty_oauth
from workers.pagerduty.records import Credential

log = logging.getLogger(__name__)

USABLE = statuses(lambda m: m.usable)  # models.connection.STATUS_MEANINGS


class ConnectionUnavailable(Exception):
    """The connection is gone, disconnected, or waiting for a person; do not call PagerDuty."""

    def __init__(self, connection_id: uuid.UUID | str, status: str | None) -> None:
        super().__init__(f"connection {connection_id} is {status or 'missing'}")
        self.status = status


class NeedsReauth(ConnectionUnavailable):
    """The refresh token was refused; the connection is now ``needs_reauth``."""


@dataclass(frozen=True)
class ConnectionCredential:
    connection_id: uuid.UUID
    workspace_id: uuid.UUID
    generation: int
    auth_method: str
    api_base_url: str
    credential: Credential
    expires_at: datetime | None
    # OAuth: the scopes PagerDuty granted; None for API keys (not scope-limited).
    scopes: frozenset[str] | None = None

    def __repr__(self) -> str:
        return (
            f"ConnectionCredential(connection_id={self.connection_id}, "
            f"generation={self.generation}, auth_method={self.auth_method!r})"
        )


def _needs_refresh(conn: PagerDutyConnection, margin: timedelta) -> bool:
    return conn.access_token_expires_at is None or conn.access_token_expires_at <= utcnow() + margin


def _credential(conn: PagerDutyConnection) -> ConnectionCredential:
    settings = get_settings()
    if conn.auth_method == AuthMethod.API_KEY:
        if not conn.api_key:
            raise ConnectionUnavailable(conn.id, conn.status)
        secret, kind = conn.api_key, "api_key"
    else:
        if not conn.access_token:
            raise ConnectionUnavailable(conn.id, conn.status)
        secret, kind = conn.access_token, "oauth"
    return ConnectionCredential(
        connection_id=conn.id,
        workspace_id=conn.workspace_id,
        generation=conn.generation,
        auth_method=conn.auth_method,
        api_base_url=settings.api_base_url(conn.region),
        credential=Credential(kind=kind, secret=secret),  # type: ignore[arg-type]
        expires_at=conn.access_token_expires_at,
        scopes=frozenset((conn.granted_scopes or "").split())
        if conn.auth_method == AuthMethod.OAUTH
        else None,
    )


def credential_for(
    connection_id: uuid.UUID | str,
    *,
    rejected: Credential | None = None,
    margin: timedelta | None = None,
    oauth_factory: OAuthFactory = pagerduty_oauth,
) -> ConnectionCredential:
    """A credential to call PagerDuty with, for a connection that may be used now.

    ``rejected``: the credential PagerDuty just answered 401 to. For OAuth this forces one
    refresh, unless another worker already replaced that token (then its new token is used).
    Raises ``ConnectionUnavailable`` (or ``NeedsReauth``), or ``Transient`` when PagerDuty's
    token endpoint cannot be reached (the refresh token is then still the stored one).
    """
    settings = get_settings()
    margin = (
        margin if margin is not None else timedelta(seconds=settings.token_refresh_margin_seconds)
    )
    cid = as_uuid(connection_id)
    with transaction() as session:
        # One statement: the row and the ciphertext of both secrets (deferred on the model), so
        # the secret this auth method uses needs no lazy load of its own; it is decrypted only
        # once the connection is known usable, as the lazy load did.
        row = session.execute(
            select(
                PagerDutyConnection,
                type_coerce(PagerDutyConnection.api_key, Text),
                type_coerce(PagerDutyConnection.access_token, Text),
            ).where(PagerDutyConnection.id == cid)
        ).one_or_none()
        if row is None or row[0].status not in USABLE:
            raise ConnectionUnavailable(cid, row[0].status if row is not None else None)
        conn, raw_api_key, raw_access_token = row
        if conn.auth_method == AuthMethod.API_KEY:
            name, raw = "api_key", raw_api_key
        else:
            name, raw = "access_token", raw_access_token
        set_committed_value(conn, name, crypto.decrypt(str(raw)) if raw is not None else None)
        current = _credential(conn)
    if conn.auth_method == AuthMethod.API_KEY:
        if rejected is not None and rejected.secret == current.credential.secret:
            raise InvalidCredentials("PagerDuty rejected this API key", status=401)
        return current
    stale = rejected is not None and rejected.secret == current.credential.secret
    if not stale and not _needs_refresh(conn, margin):
        return current
    return refresh_connection(
        cid,
        seen=current.credential if stale else None,
        margin=margin,
        oauth_factory=oauth_factory,
    )


def refresh_connection(
    connection_id: uuid.UUID | str,
    *,
    seen: Credential | None = None,
    margin: timedelta | None = None,
    wait_seconds: float = 30.0,
    oauth_factory: OAuthFactory = pagerduty_oauth,
) -> ConnectionCredential:
    """Refresh the connection's OAuth tokens once, however many callers ask at the same moment.

    ``seen``: the access token the caller holds and wants replaced (a 401). Without it, the
    refresh happens only if the stored token is within ``margin`` of expiry.
    """
    settings = get_settings()
    margin = (
        margin if margin is not None else timedelta(seconds=settings.token_refresh_margin_seconds)
    )
    cid = as_uuid(connection_id)
    # Efficiency: one worker refreshes while the others wait here rather than on a row lock.
    with locks.wait_lock(f"refresh:{cid}", ttl_seconds=60, wait_seconds=wait_seconds):
        with transaction() as session:
            conn = lock_connection(session, cid)
            if conn is None or conn.status not in USABLE:
                raise ConnectionUnavailable(cid, conn.status if conn else None)
            if conn.auth_method != AuthMethod.OAUTH:
                return _credential(conn)
            current = _credential(conn)
            replaced = seen is not None and seen.secret != current.credential.secret
            if replaced or (seen is None and not _needs_refresh(conn, margin)):
                # Someone else refreshed while we waited: use their committed token.
                return current
            if not conn.refresh_token or not conn.oauth_client_secret:
                _mark_needs_reauth(session, conn)
                needs_reauth = True
            else:
                needs_reauth = False
                try:
                    identity = oauth_factory(conn.oauth_client_id or "", conn.oauth_client_secret)
                    tokens = identity.refresh(conn.refresh_token)
                except (InvalidGrant, InvalidClient, InvalidCredentials):
                    _mark_needs_reauth(session, conn)
                    needs_reauth = True
                else:
                    _store_tokens(conn, tokens)
                    result = _credential(conn)
        # The transaction has committed here: the new tokens are durable before first use.
        if needs_reauth:
            _record_metric("failed")
            raise NeedsReauth(cid, ConnectionStatus.NEEDS_REAUTH)
        _record_metric("succeeded")
        log.info("refreshed OAuth token", extra={"connection_id": str(cid)})
        return result


def _store_tokens(conn: PagerDutyConnection, tokens: oauth.TokenSet) -> None:
    conn.access_token = tokens.access_token
    if tokens.refresh_token:
        conn.refresh_token = tokens.refresh_token
    conn.access_token_expires_at = tokens.expires_at
    conn.token_refreshed_at = utcnow()
    if tokens.scopes:
        conn.granted_scopes = " ".join(sorted(tokens.scopes))


def _mark_needs_reauth(session: Session, conn: PagerDutyConnection) -> None:
    if conn.can_transition(ConnectionStatus.NEEDS_REAUTH):
        transition(session, conn, ConnectionStatus.NEEDS_REAUTH, error=messages.REAUTH)


def _record_metric(outcome: str) -> None:
    metrics.incr("rrpd_token_refreshes_total", outcome=outcome)


def is_idle(connection_id: uuid.UUID | str, now: datetime | None = None) -> bool:
    """Not refreshed for a day: refresh anyway so the refresh token never ages out."""
    now = now or utcnow()
    with transaction() as session:
        conn = session.get(PagerDutyConnection, as_uuid(connection_id))
        if conn is None or conn.token_refreshed_at is None:
            return conn is not None
        return conn.token_refreshed_at <= now - timedelta(days=1)


def connections_due_for_refresh(now: datetime | None = None) -> list[uuid.UUID]:
    """OAuth connections whose token expires within twice the margin, or idle for a day."""
    settings = get_settings()
    now = now or utcnow()
    soon = now + timedelta(seconds=2 * settings.token_refresh_margin_seconds)
    idle = now - timedelta(days=1)
    with transaction() as session:
        rows = session.execute(
            select(PagerDutyConnection.id).where(
                PagerDutyConnection.auth_method == AuthMethod.OAUTH,
                PagerDutyConnection.status == ConnectionStatus.CONNECTED,
                (PagerDutyConnection.access_token_expires_at <= soon)
                | (PagerDutyConnection.token_refreshed_at.is_(None))
                | (PagerDutyConnection.token_refreshed_at <= idle),
            )
        ).scalars()
        return list(rows)

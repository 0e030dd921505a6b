"""An OAuth login over a connected connection: checked while the live credentials keep serving.

The OAuth counterpart of a replacement API key (``workers.connections.pending``). When the
callback of a login arrives while the workspace's connection is ``connected`` (whatever its auth
method), the login does not replace the live credentials: it becomes the connection's pending
credential (``pending_auth_method = oauth``, ``pending_generation`` the generation it gets if
proven) and its ``oauth_authorizations`` row is attached to the connection. That row is the
only login a connected connection has (a decided login's row is deleted with its outcome), so
"the login attached to a connected connection" is the pending one. The exchange task
(``workers.connections.oauth_exchange``) then ends it here: proven, it is swapped in; refused,
lost or of another account, it is ended and its row (client secret, verifier, tokens) deleted,
the live connection untouched.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    Region,
    utcnow,
)
from workers.connections import messages, pending
from workers.connections.activation import ActivationResult, Outcome
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.pagerduty import id_token, oauth


def is_checking_login(conn: PagerDutyConnection | None) -> bool:
    """An OAuth login waits beside the live credentials of ``conn`` right now."""
    return (
        conn is not None
        and conn.status == ConnectionStatus.CONNECTED
        and conn.pending_status == PendingStatus.CHECKING
        and conn.pending_auth_method == AuthMethod.OAUTH
        and conn.pending_generation is not None
        and conn.pending_generation > conn.generation
    )


def stage_login(session: Session, conn: PagerDutyConnection, auth: OAuthAuthorization) -> int:
    """The callback's half: keep the consumed login ``auth`` as the pending credential of the
    (locked, connected) connection; returns the generation it gets if proven. A credential
    pending before (a key, or another login) is superseded."""
    now = utcnow()
    pending.forget_logins(session, conn)  # ``auth`` is not attached yet: it stays
    conn.pending_api_key = None
    conn.pending_auth_method = AuthMethod.OAUTH
    conn.pending_region = auth.region
    conn.pending_status = PendingStatus.CHECKING
    conn.pending_generation = pending.next_generation(conn)
    conn.pending_message = messages.PENDING_LOGIN_CHECKING
    conn.pending_since = now
    conn.pending_account = None  # a superseded key's account-change plan is not this login's
    pending.expect_check(conn, now)
    auth.connection_id = conn.id
    session.flush()
    return conn.pending_generation


def push_deadline(conn: PagerDutyConnection, now: datetime, seconds: float) -> None:
    """An exchange delivery is working on the pending login: not driven again before
    ``seconds`` (the drive count stays, so a login that keeps dying still ends ``lost``)."""
    conn.pending_drive_at = now + timedelta(seconds=seconds)


def running(conn: PagerDutyConnection) -> bool:
    """A delivery that took the pending login's code may still be exchanging it."""
    return conn.pending_drive_at is not None and conn.pending_drive_at > utcnow()


def _locked_if_checking(
    session: Session, aid: uuid.UUID, cid: uuid.UUID, generation: int
) -> PagerDutyConnection | None:
    """The connection under its lock if ``generation`` is still its pending login's check; if
    not, the login ``aid`` (superseded, discarded, or its connection no longer connected) is
    deleted with its secrets, as nothing can use it any more."""
    conn = lock_connection(session, cid)
    if is_checking_login(conn):
        assert conn is not None
        if conn.pending_generation == generation:
            return conn
    session.execute(
        delete(OAuthAuthorization)
        .where(OAuthAuthorization.id == aid)
        .execution_options(synchronize_session=False)
    )
    return None


def end_login(
    aid: uuid.UUID, cid: uuid.UUID, generation: int, status: PendingStatus, reason: str
) -> ActivationResult:
    """The pending login ends ``rejected`` or ``lost`` with ``reason`` (the words a connect
    would have written); the live credentials stay."""
    words = (
        messages.pending_login_rejected(reason)
        if status is PendingStatus.REJECTED
        else messages.pending_login_lost(reason)
    )
    with transaction() as session:
        conn = _locked_if_checking(session, aid, cid, generation)
        if conn is None:
            return ActivationResult("stale", str(cid))
        pending.record_ended(session, conn, status, words)
    outcome: Outcome = "pending_rejected" if status is PendingStatus.REJECTED else "pending_lost"
    return ActivationResult(outcome, str(cid), words)


def finish_proven(
    aid: uuid.UUID,
    cid: uuid.UUID,
    generation: int,
    *,
    tokens: oauth.TokenSet,
    claims: id_token.IdTokenClaims,
    region: Region,
    client_id: str,
    client_secret: str,
    notice: str | None,
) -> ActivationResult:
    """The login's id_token is verified: swap it in (tokens, app, scopes, account facts,
    region), unless it is of another PagerDuty account than the live connection."""
    with transaction() as session:
        conn = _locked_if_checking(session, aid, cid, generation)
        if conn is None:
            return ActivationResult("stale", str(cid))
        live, new = conn.pagerduty_subdomain, claims.subdomain
        other_account = (
            live != new
            if live and new
            else bool(conn.pagerduty_account_id and conn.pagerduty_account_id != claims.account_id)
        )
        if other_account:
            # Its schedules are not the bound rotations' ones: set aside, as a key would be.
            message = messages.pending_login_account_change(
                live or conn.pagerduty_account_id or "?", new or claims.account_id
            )
            pending.record_ended(session, conn, PendingStatus.ACCOUNT_CHANGE, message)
            return ActivationResult("pending_account_change", str(cid), message)
        conn.clear_credentials()
        pending.forget_logins(session, conn)  # this login's row too: its secrets are copied
        conn.auth_method = AuthMethod.OAUTH
        conn.api_key = None
        conn.key_level = None
        conn.access_token = tokens.access_token
        conn.refresh_token = tokens.refresh_token or None
        conn.access_token_expires_at = tokens.expires_at
        conn.token_refreshed_at = utcnow()
        conn.granted_scopes = " ".join(sorted(tokens.scopes))
        conn.oauth_client_id = client_id
        conn.oauth_client_secret = client_secret
        conn.pagerduty_account_id = claims.account_id
        conn.pagerduty_user_id = claims.user_id
        if new:
            conn.pagerduty_subdomain = new
        conn.region = region
        pending.serve_pending(session, conn, notice)
    return ActivationResult("pending_accepted", str(cid))

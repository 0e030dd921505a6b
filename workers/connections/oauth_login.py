"""Connecting with OAuth 2.0: start a login (state + PKCE), then PagerDuty's callback.

The state is single-use and stored only as a SHA-256; the PKCE verifier, the client secret and
(until the exchange task takes it) the authorization code are encrypted. The callback stores the
code and enqueues ``pagerduty.exchange_oauth_code``; the worker half is
``workers.connections.oauth_exchange``.

PagerDuty documents no ``state`` in its redirect (pagerduty-facts.md, OAuth): the browser that
starts a login also keeps its state in an HttpOnly cookie (``api_stub.oauth_browser``), and a
callback without ``state`` takes the login from that cookie. CSRF safety is kept: only the
browser that started the login holds it, and the code is bound to that login's PKCE verifier.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    AuthMethod,
    ConnectionStatus,
    Member,
    OAuthAuthorization,
    PagerDutyConnection,
    utcnow,
)
from workers.connections import messages, pending_login
from workers.connections.setup import install_credentials, lock_workspace, normalize_region
from workers.core.access import Actor, Conflict, Invalid, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import live_connection
from workers.core.db import affected_rows
from workers.core.settings import get_settings
from workers.pagerduty.oauth import DEFAULT_SCOPES
from workers.tasking.contract import (
    EXCHANGE_OAUTH_CODE,
)
from workers.tasking.enqueue import enqueue

# What an OAuth login asks for (why each: workers.pagerduty.oauth.DEFAULT_SCOPES).
OAUTH_SCOPES: tuple[str, ...] = DEFAULT_SCOPES
_CLIENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
# RFC 6749 section 4.1.2.1 error codes; anything else is reported as authorization_failed.
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    }
)
MAX_CODE_LENGTH = 2048


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class OAuthStart:
    authorization_id: uuid.UUID
    authorization_url: str
    expires_at: datetime
    # For the starting browser's cookie only (a callback may come back without it).
    state: str = field(repr=False, default="")


# A live OAuth connection in these states keeps its app's client id and secret (encrypted): a
# new login may reuse them ("Log in again with OAuth" without typing them again).
_REUSABLE_APP_STATUSES = frozenset(
    {ConnectionStatus.CONNECTED, ConnectionStatus.INVALID, ConnectionStatus.NEEDS_REAUTH}
)


def start_oauth(
    session: Session,
    actor: Actor,
    client_id: str | None,
    client_secret: str | None,
    region: str = "us",
    *,
    now: datetime | None = None,
) -> OAuthStart:
    """Begin a PagerDuty OAuth login: a single-use state (stored hashed) and a PKCE verifier.

    With neither ``client_id`` nor ``client_secret`` (omitted or empty) the app stored on the
    workspace's live OAuth connection is used again, its secret copied (encrypted) into the
    login; none stored is a ``Conflict`` (``no_stored_oauth_app``). A given pair replaces it
    once the login is proven."""
    from workers.pagerduty.oauth import build_authorization_url, new_code_verifier, new_state

    require_manager(actor)
    client_id = (client_id or "").strip()
    client_secret = (client_secret or "").strip()
    current = live_connection(session, actor.workspace_id)
    if current is not None and current.status == ConnectionStatus.DISCONNECTING:
        raise Conflict(messages.DISCONNECTING, code="disconnecting")
    if not client_id and not client_secret:
        client_id, client_secret = _stored_app(current)
    if not _CLIENT_ID_RE.match(client_id):
        raise Invalid(messages.BAD_CLIENT_ID, code="invalid_client_id")
    if not client_secret or len(client_secret) > 500 or any(c.isspace() for c in client_secret):
        raise Invalid(messages.BAD_CLIENT_SECRET, code="invalid_client_secret")
    region = normalize_region(region)
    settings = get_settings()
    now = now or utcnow()
    state = new_state()
    verifier = new_code_verifier()
    auth = OAuthAuthorization(
        id=uuid.uuid4(),
        workspace_id=actor.workspace_id,
        state_hash=state_hash(state),
        code_verifier=verifier,
        client_id=client_id,
        client_secret=client_secret,
        region=region,
        requested_by_member_id=actor.member_id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.oauth_state_ttl_seconds),
    )
    session.add(auth)
    url = build_authorization_url(
        settings.pagerduty_identity_url,
        client_id,
        settings.oauth_redirect_uri,
        OAUTH_SCOPES,
        state,
        verifier,
    )
    audit(
        session,
        actor.workspace_id,
        AuditAction.CONNECT_OAUTH_STARTED,
        actor_member_id=actor.member_id,
        authorization_id=auth.id,
        region=region,
        client_id=client_id,
    )
    session.flush()
    return OAuthStart(auth.id, url, auth.expires_at, state)


def _stored_app(conn: PagerDutyConnection | None) -> tuple[str, str]:
    """The client id and secret of the live OAuth connection's app, never shown to anyone."""
    if (
        conn is None
        or conn.auth_method != AuthMethod.OAUTH
        or conn.status not in _REUSABLE_APP_STATUSES
        or not conn.oauth_client_id
        or not conn.oauth_client_secret
    ):
        raise Conflict(messages.NO_STORED_OAUTH_APP, code="no_stored_oauth_app")
    return conn.oauth_client_id, conn.oauth_client_secret


@dataclass(frozen=True)
class CallbackOutcome:
    """Where to send the browser. ``params`` go on the integrations page's query string."""

    result: str  # connecting | denied | error
    reason: str | None = None
    task_id: str | None = None
    workspace_id: uuid.UUID | None = None
    connection_id: uuid.UUID | None = None
    params: dict[str, str] = field(default_factory=dict)

    def redirect_url(self, base: str | None = None) -> str:
        return with_query(base or get_settings().effective_app_integrations_url, self.params)


def with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _outcome(result: str, reason: str | None = None, **extra: Any) -> CallbackOutcome:
    params = {"pagerduty": result}
    if reason:
        params["reason"] = reason
    if extra.get("task_id"):
        params["task_id"] = extra["task_id"]
    return CallbackOutcome(result=result, reason=reason, params=params, **extra)


def _consume_state(
    session: Session, state: str | None, now: datetime
) -> tuple[OAuthAuthorization | None, str | None]:
    """Atomically mark the login's state used. Returns (authorization, None) or (None, reason).

    One conditional UPDATE: under concurrency PostgreSQL re-checks ``consumed_at IS NULL`` after
    the first writer commits, so exactly one request wins and a replay always fails.
    """
    if not state or len(state) > 512:
        return None, "state_invalid"
    digest = state_hash(state)
    result = session.execute(
        update(OAuthAuthorization)
        .where(
            OAuthAuthorization.state_hash == digest,
            OAuthAuthorization.consumed_at.is_(None),
            OAuthAuthorization.expires_at > now,
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    auth = session.execute(
        select(OAuthAuthorization)
        .where(OAuthAuthorization.state_hash == digest)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if affected_rows(result) == 1 and auth is not None:
        return auth, None
    if auth is not None and auth.consumed_at is None and auth.expires_at <= now:
        _forget(session, auth)  # it can never be used; its secrets go now
        return None, "state_expired"
    return None, "state_invalid"  # unknown (forged) or already used (replayed)


def _forget(session: Session, auth: OAuthAuthorization) -> None:
    """A login that ended at the callback (denied, refused, expired): nothing needs its client
    secret or PKCE verifier any more, so its row goes. A replay of its state is then refused as
    unknown, the same answer as used."""
    session.execute(
        delete(OAuthAuthorization)
        .where(OAuthAuthorization.id == auth.id)
        .execution_options(synchronize_session=False)
    )
    session.expunge(auth)


def handle_oauth_callback(
    session: Session,
    *,
    state: str | None,
    code: str | None = None,
    error: str | None = None,
    remembered_state: str | None = None,
    now: datetime | None = None,
) -> CallbackOutcome:
    """PagerDuty sent the browser back. The single-use, unexpired state is the only credential:
    the one in the redirect, or, when PagerDuty sent none, the one the browser kept from the
    start of its login (``remembered_state``). With neither: ``state_missing``. A state in the
    redirect always decides (a cookie naming another login is another tab's login).

    The state is consumed whatever the outcome (denied, missing code...), so it can never be
    used twice; a login that ends here is deleted with its secrets. On success the code is
    stored encrypted and the exchange task is enqueued.
    """
    now = now or utcnow()
    if not state and not remembered_state:
        return _outcome("error", "state_missing")
    auth, reason = _consume_state(session, state or remembered_state, now)
    if auth is None:
        return _outcome("error", reason)
    outcome = _use_login(session, auth, code, error, now, state_returned=bool(state))
    if outcome.result != "connecting":
        _forget(session, auth)
    return outcome


def _use_login(
    session: Session,
    auth: OAuthAuthorization,
    code: str | None,
    error: str | None,
    now: datetime,
    *,
    state_returned: bool,
) -> CallbackOutcome:
    """What the consumed login's callback comes to: connecting (code stored, exchange
    enqueued), denied, or an error."""
    workspace_id = auth.workspace_id
    who = auth.requested_by_member_id

    if error:
        if error == "access_denied":
            audit(
                session,
                workspace_id,
                AuditAction.CONNECT_OAUTH_DENIED,
                actor_member_id=who,
                authorization_id=auth.id,
            )
            return _outcome("denied", workspace_id=workspace_id)
        reason = error if error in _OAUTH_ERRORS else "authorization_failed"
        audit(
            session,
            workspace_id,
            AuditAction.CONNECT_OAUTH_FAILED,
            actor_member_id=who,
            authorization_id=auth.id,
            reason=reason,
        )
        return _outcome("error", reason, workspace_id=workspace_id)
    if not code:
        return _outcome("error", "missing_code", workspace_id=workspace_id)
    if len(code) > MAX_CODE_LENGTH or not code.isprintable():
        return _outcome("error", "invalid_code", workspace_id=workspace_id)

    # The person who started the login must still be allowed to connect.
    member = session.get(Member, who) if who is not None else None
    if (
        member is None
        or member.workspace_id != workspace_id
        or not member.role.may_manage_integrations
    ):
        audit(
            session,
            workspace_id,
            AuditAction.CONNECT_OAUTH_FAILED,
            actor_member_id=who,
            authorization_id=auth.id,
            reason="forbidden",
        )
        return _outcome("error", "forbidden", workspace_id=workspace_id)

    try:
        lock_workspace(session, workspace_id)
        live = live_connection(session, workspace_id, lock=True)
        if live is not None and live.status == ConnectionStatus.CONNECTED:
            # New credentials never break working ones: the login is checked beside the live
            # credentials (workers.connections.pending_login), swapped in only if proven.
            generation = pending_login.stage_login(session, live, auth)
            return _exchange(
                session, auth, code, now, live.id, generation, state_returned, pending=True
            )
        conn, replaced = install_credentials(
            session,
            workspace_id,
            actor_member_id=who,
            auth_method=AuthMethod.OAUTH,
            region=auth.region,
            oauth_client_id=auth.client_id,
            oauth_client_secret=auth.client_secret,
        )
    except (Conflict, Missing) as exc:
        return _outcome("error", exc.code, workspace_id=workspace_id)
    auth.connection_id = conn.id
    return _exchange(
        session, auth, code, now, conn.id, conn.generation, state_returned, replaced=replaced
    )


def _exchange(
    session: Session,
    auth: OAuthAuthorization,
    code: str,
    now: datetime,
    connection_id: uuid.UUID,
    generation: int,
    state_returned: bool,
    *,
    replaced: bool = True,
    pending: bool = False,
) -> CallbackOutcome:
    """Store the code (encrypted) on the attached login and enqueue its exchange."""
    workspace_id = auth.workspace_id
    auth.code = code
    auth.code_received_at = now
    task_id = enqueue(
        session, EXCHANGE_OAUTH_CODE, workspace_id=workspace_id, authorization_id=auth.id
    )
    # ``pending``: the login waits beside the live credentials (as for a key).
    extra: dict[str, Any] = {"pending": True} if pending else {}
    audit(
        session,
        workspace_id,
        AuditAction.CONNECT_OAUTH,
        actor_member_id=auth.requested_by_member_id,
        authorization_id=auth.id,
        connection_id=connection_id,
        region=auth.region,
        generation=generation,
        replaced=replaced,
        task_id=task_id,
        # Whether PagerDuty echoed the state (it documents none): what operators learn from.
        state_returned=state_returned,
        **extra,
    )
    session.flush()
    return _outcome(
        "connecting", task_id=task_id, workspace_id=workspace_id, connection_id=connection_id
    )

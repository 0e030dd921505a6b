"""Turn a ``validating`` connection into ``connected`` or ``invalid``.

Two ways in: an API key is probed against PagerDuty; an OAuth authorization code is exchanged
for tokens. Both are plain functions called by thin tasks (``tasks/connect.py``). PagerDuty is
called outside any database transaction; the outcome is written in a short transaction that
re-reads the connection under a row lock and checks its generation, so a key replaced or a
workspace disconnected meanwhile is never overwritten by a stale result.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    KeyLevel,
    OAuthAuthorization,
    PagerDutyConnection,
    Region,
    utcnow,
)
from workers.core import crypto, metrics
from workers.core.audit import audit
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.pagerduty import oauth
from workers.pagerduty.client import PagerDutyClient, shared_http_client
from workers.pagerduty.errors import (
    Forbidden,
    IdTokenInvalid,
    InvalidClient,
    InvalidCredentials,
    InvalidGrant,
    NoApiAccess,
    OAuthError,
    PagerDutyError,
    UnknownRegion,
)
from workers.pagerduty.records import Credential, ProbeResult, User
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import enqueue

log = logging.getLogger(__name__)

Outcome = Literal["connected", "invalid", "stale"]

# What workspace admins read. Plain words: what happened and what to do.
MSG_KEY_REJECTED = (
    "PagerDuty rejected this API key in both regions (US and EU). Check that you copied the "
    "whole key and that it has not been deleted in PagerDuty (Integrations > API Access Keys)."
)
MSG_NO_API_ACCESS = (
    "Your PagerDuty account's plan does not include REST API access, so Round Robin cannot "
    "read schedules. Ask your PagerDuty account owner about API access."
)
MSG_UNREACHABLE = (
    "Round Robin could not reach PagerDuty to check this connection after several tries. "
    "Please try again in a few minutes."
)
MSG_CODE_REFUSED = (
    "PagerDuty did not accept the login (the authorization took too long or was already "
    "used). Please log in with OAuth 2.0 again."
)
MSG_CLIENT_REFUSED = (
    "PagerDuty rejected the OAuth app's Client ID or Client Secret. Check both in PagerDuty "
    "(Integrations > App Registration) and log in again."
)
MSG_LOGIN_UNVERIFIED = (
    "PagerDuty's login answer could not be verified, so the connection was not saved. "
    "Please log in again."
)


def forbidden_message(exc: Forbidden) -> str:
    what = f" (missing: {', '.join(exc.missing)})" if exc.missing else ""
    return (
        "PagerDuty accepted the credential but it lacks permission to read users and "
        f"schedules{what}. Use a key or login that can read users and schedules."
    )


def missing_scopes_message(granted: frozenset[str], requested: tuple[str, ...]) -> str:
    """Which scopes PagerDuty left out, and what to change in the app registration.

    PagerDuty does not refuse a scope the app lacks: it grants only ``openid``. So the usual
    cause is an app registration whose scope list differs from what Round Robin asks for.
    """
    missing = [s for s in requested if s not in granted]
    got = ", ".join(sorted(granted)) if granted else "no scope at all"
    to_tick = ", ".join(s for s in requested if s != "openid")
    return (
        f"PagerDuty granted only {got}, so Round Robin cannot read users and schedules "
        f"(missing: {', '.join(missing)}). PagerDuty grants nothing but openid when the app's "
        "registration lacks any scope Round Robin asks for: in PagerDuty open Integrations > "
        f"App Registration, edit this Scoped OAuth app, tick {to_tick}, save, and log in again."
    )


@dataclass(frozen=True)
class ActivationResult:
    outcome: Outcome
    connection_id: str | None
    message: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        # Returned by tasks and shown in Flower: ids and plain words only.
        return {
            "outcome": self.outcome,
            "connection_id": self.connection_id,
            "message": self.message,
        }


def _subdomain_from(html_url: str | None) -> str | None:
    if not html_url:
        return None
    host = urlsplit(html_url).hostname or ""
    return host.split(".")[0] if host.count(".") >= 2 else None


# --- API keys ------------------------------------------------------------------------------------


def validate_api_key(connection_id: uuid.UUID | str, generation: int) -> ActivationResult:
    """Probe PagerDuty with the stored key and record the outcome.

    An API key cannot tell its region, and the other region's host answers 401 to it
    (PagerDuty's own client names this as a common cause of 401s), so a key refused in the
    chosen region is tried in the other one before it is called invalid; the admin is told
    which region worked.

    Raises ``Transient``/``RateLimited`` (from the client) for the task to retry; every other
    PagerDuty answer is final and recorded.
    """
    cid = as_uuid(connection_id)
    with transaction() as session:
        conn = session.get(PagerDutyConnection, cid)
        if not _still_validating(conn, generation, AuthMethod.API_KEY):
            return ActivationResult("stale", str(cid))
        assert conn is not None and conn.api_key_encrypted
        api_key = crypto.decrypt(conn.api_key_encrypted)
        chosen = conn.region
    credential = Credential(kind="api_key", secret=api_key)
    other = Region.EU.value if chosen == Region.US.value else Region.US.value
    try:
        try:
            region, client, probe = chosen, *_probe(chosen, credential)
        except InvalidCredentials:
            region, client, probe = other, *_probe(other, credential)
        me = client.me()
    except InvalidCredentials:
        return _finish_invalid(cid, generation, MSG_KEY_REJECTED)
    except Forbidden as exc:
        return _finish_invalid(cid, generation, forbidden_message(exc))
    except NoApiAccess:
        return _finish_invalid(cid, generation, MSG_NO_API_ACCESS)
    metrics.incr("rrpd_connection_checks_total", kind="api_key", outcome="connected")
    notices = [n for n in (region_notice(chosen, region), role_notice(me)) if n]
    return _finish_connected(
        cid,
        generation,
        key_level="account" if me is None else "user",
        subdomain=_subdomain_from(probe.html_url),
        kind="initial",
        region=region,
        notice=" ".join(notices) or None,
    )


def _probe(region: str, credential: Credential) -> tuple[PagerDutyClient, ProbeResult]:
    client = PagerDutyClient(
        get_settings().api_base_url(region),
        credential,
        http=shared_http_client(),
        timeout=get_settings().pagerduty_timeout_seconds,
    )
    return client, client.probe()


# PagerDuty roles that see every schedule and user of the account.
FULL_VIEW_ROLES = frozenset({"owner", "admin"})


def role_notice(user: User | None) -> str | None:
    """A user-level key or OAuth login acts as its user: a non-admin may not see everything
    (the help article asks for an Admin for that reason)."""
    if user is None or user.role is None or user.role in FULL_VIEW_ROLES:
        return None
    return (
        f"This connection acts as {user.name or 'a PagerDuty user'}, whose PagerDuty role "
        f"({user.role}) may not see every schedule and user of the account; Round Robin sees "
        "only what that user can see. Connect with an account-level API key or as a PagerDuty "
        "Admin to see everything."
    )


def region_notice(chosen: str, used: str) -> str | None:
    if chosen == used:
        return None
    names = {Region.US.value: "US", Region.EU.value: "EU"}
    hosts = {Region.US.value: "api.pagerduty.com", Region.EU.value: "api.eu.pagerduty.com"}
    return (
        f"This API key belongs to a PagerDuty account in the {names[used]} region, not the "
        f"{names[chosen]} region that was chosen; Round Robin connected to PagerDuty "
        f"{names[used]} ({hosts[used]}) instead."
    )


def _still_validating(
    conn: PagerDutyConnection | None, generation: int, method: AuthMethod
) -> bool:
    return (
        conn is not None
        and conn.generation == generation
        and conn.status == ConnectionStatus.VALIDATING.value
        and conn.auth_method == method.value
    )


def _locked(session: Session, cid: uuid.UUID) -> PagerDutyConnection | None:
    return session.execute(
        select(PagerDutyConnection).where(PagerDutyConnection.id == cid).with_for_update()
    ).scalar_one_or_none()


def _finish_connected(
    cid: uuid.UUID,
    generation: int,
    *,
    kind: str,
    key_level: str | None = None,
    subdomain: str | None = None,
    tokens: oauth.TokenSet | None = None,
    claims: oauth.IdTokenClaims | None = None,
    region: str | None = None,
    client_id: str | None = None,
    client_secret_encrypted: str | None = None,
    authorization_id: uuid.UUID | None = None,
    notice: str | None = None,
) -> ActivationResult:
    with transaction() as session:
        _forget_authorization(session, authorization_id)
        conn = _locked(session, cid)
        if (
            conn is None
            or conn.generation != generation
            or conn.status != ConnectionStatus.VALIDATING.value
        ):
            return ActivationResult("stale", str(cid))
        if key_level:
            conn.key_level = KeyLevel(key_level).value
        if tokens is not None:
            conn.access_token_encrypted = crypto.encrypt(tokens.access_token)
            conn.refresh_token_encrypted = (
                crypto.encrypt(tokens.refresh_token) if tokens.refresh_token else None
            )
            conn.access_token_expires_at = tokens.expires_at
            conn.token_refreshed_at = utcnow()
            conn.granted_scopes = " ".join(sorted(tokens.scopes))
            conn.oauth_client_id = client_id
            conn.oauth_client_secret_encrypted = client_secret_encrypted
            conn.api_key_encrypted = None
        if claims is not None:
            conn.pagerduty_account_id = claims.account_id
            conn.pagerduty_user_id = claims.user_id
            subdomain = claims.subdomain or subdomain
        if region:
            conn.region = region
        if subdomain:
            conn.pagerduty_subdomain = subdomain
        conn.notice = notice
        conn.transition(ConnectionStatus.CONNECTED)
        conn.connected_at = utcnow()
        conn.next_sync_at = None
        audit(
            session,
            conn.workspace_id,
            "pagerduty.connected",
            connection_id=conn.id,
            auth_method=conn.auth_method,
            region=conn.region,
            subdomain=conn.pagerduty_subdomain,
            **({"notice": notice} if notice else {}),
        )
        # The first sync starts as soon as the connection is committed.
        enqueue(
            session,
            SYNC_CONNECTION,
            workspace_id=conn.workspace_id,
            connection_id=conn.id,
            kind=kind,
        )
    log.info("connection connected", extra={"connection_id": str(cid)})
    return ActivationResult("connected", str(cid))


def _finish_invalid(
    cid: uuid.UUID, generation: int, message: str, authorization_id: uuid.UUID | None = None
) -> ActivationResult:
    with transaction() as session:
        _forget_authorization(session, authorization_id)
        conn = _locked(session, cid)
        if (
            conn is None
            or conn.generation != generation
            or conn.status != ConnectionStatus.VALIDATING.value
        ):
            return ActivationResult("stale", str(cid))
        conn.transition(ConnectionStatus.INVALID, error=message)
        audit(
            session, conn.workspace_id, "pagerduty.invalid", connection_id=conn.id, reason=message
        )
    metrics.incr("rrpd_connection_checks_total", kind="any", outcome="invalid")
    log.info("connection invalid", extra={"connection_id": str(cid)})
    return ActivationResult("invalid", str(cid), message)


def give_up(
    connection_id: uuid.UUID | str, generation: int | None, message: str = MSG_UNREACHABLE
) -> ActivationResult:
    """After the last retry (or a crash loop): a clear error state, never stuck in validating."""
    cid = as_uuid(connection_id)
    if generation is None:
        with transaction() as session:
            conn = session.get(PagerDutyConnection, cid)
            if conn is None:
                return ActivationResult("stale", str(cid))
            generation = conn.generation
    return _finish_invalid(cid, generation, message)


# --- OAuth ---------------------------------------------------------------------------------------


def exchange_oauth_code(authorization_id: uuid.UUID | str) -> ActivationResult:
    """Trade the callback's code for tokens; verify scopes and the id_token; connect.

    The code is single-use and lives 30 seconds, so nothing here is retried: any failure is
    recorded as a clear error telling the admin to log in again.
    """
    settings = get_settings()
    aid = as_uuid(authorization_id)
    with transaction() as session:
        auth = session.execute(
            select(OAuthAuthorization).where(OAuthAuthorization.id == aid).with_for_update()
        ).scalar_one_or_none()
        if auth is None or auth.connection_id is None:
            return ActivationResult("stale", None)
        conn = session.get(PagerDutyConnection, auth.connection_id)
        if conn is None or conn.status != ConnectionStatus.VALIDATING.value:
            return ActivationResult("stale", str(auth.connection_id))
        cid, generation = conn.id, conn.generation
        crashed_mid_exchange = auth.code_encrypted is None
    if crashed_mid_exchange:
        # An earlier delivery took the code and died before recording the outcome. The code
        # is spent (or expired): the only honest outcome is asking for a new login.
        return _finish_oauth_invalid(aid, cid, generation, MSG_CODE_REFUSED)
    with transaction() as session:
        auth = session.execute(
            select(OAuthAuthorization).where(OAuthAuthorization.id == aid).with_for_update()
        ).scalar_one()
        if auth.code_encrypted is None:
            return ActivationResult("stale", str(cid))
        code = crypto.decrypt(auth.code_encrypted)
        verifier = crypto.decrypt(auth.code_verifier_encrypted)
        client_secret = crypto.decrypt(auth.client_secret_encrypted)
        client_id, client_secret_encrypted = auth.client_id, auth.client_secret_encrypted
        # Single use on our side too: a redelivered task cannot replay the code.
        auth.code_encrypted = None
    try:
        tokens = oauth.exchange_code(
            settings.pagerduty_identity_url,
            client_id,
            client_secret,
            code,
            settings.oauth_redirect_uri,
            verifier,
            timeout=settings.pagerduty_timeout_seconds,
        )
    except InvalidGrant:
        return _finish_oauth_invalid(aid, cid, generation, MSG_CODE_REFUSED)
    except InvalidClient:
        return _finish_oauth_invalid(aid, cid, generation, MSG_CLIENT_REFUSED)
    except (OAuthError, PagerDutyError):
        return _finish_oauth_invalid(aid, cid, generation, MSG_UNREACHABLE)
    if tokens.missing_scopes:
        message = missing_scopes_message(tokens.scopes, oauth.DEFAULT_SCOPES)
        return _finish_oauth_invalid(aid, cid, generation, message)
    try:
        if not tokens.id_token:
            raise IdTokenInvalid("no id_token in the token response", endpoint="token")
        claims = oauth.verify_id_token(
            tokens.id_token,
            oauth.jwks_endpoint(settings.pagerduty_identity_url),
            client_id,
            http=shared_http_client(),
            issuer=oauth.issuer_for(settings.pagerduty_identity_url),
        )
        region = oauth.region_for_claims(
            claims, settings.pagerduty_api_url, settings.pagerduty_eu_api_url
        )
    except (IdTokenInvalid, UnknownRegion, PagerDutyError):
        return _finish_oauth_invalid(aid, cid, generation, MSG_LOGIN_UNVERIFIED)
    try:
        me = PagerDutyClient(
            settings.api_base_url(region),
            tokens.credential,
            http=shared_http_client(),
            timeout=settings.pagerduty_timeout_seconds,
            max_retries=1,
        ).me()
    except PagerDutyError:
        me = None  # the role is advice for the admin, never a reason to refuse the login
    result = _finish_connected(
        cid,
        generation,
        kind="initial",
        tokens=tokens,
        claims=claims,
        region=region,
        client_id=client_id,
        client_secret_encrypted=client_secret_encrypted,
        authorization_id=aid,
        notice=role_notice(me),
    )
    metrics.incr("rrpd_connection_checks_total", kind="oauth", outcome=result.outcome)
    return result


def _finish_oauth_invalid(
    aid: uuid.UUID, cid: uuid.UUID, generation: int, message: str
) -> ActivationResult:
    return _finish_invalid(cid, generation, message, authorization_id=aid)


def _forget_authorization(session: Session, aid: uuid.UUID | None) -> None:
    """The pending login (verifier, client secret copy) goes in the same transaction as the
    outcome: there is never a connected or invalid connection with a usable login beside it."""
    if aid is not None:
        session.execute(delete(OAuthAuthorization).where(OAuthAuthorization.id == aid))


# An OAuth code dies in 30 s; an API-key check retries for a few minutes at most.
STALE_AFTER = {AuthMethod.OAUTH.value: 120, AuthMethod.API_KEY.value: 600}


def expire_stale_validations() -> int:
    """Connections stuck in ``validating`` (a worker died, every retry lost) get a clear error."""
    from datetime import timedelta

    now = utcnow()
    with transaction() as session:
        stuck = [
            (cid, generation)
            for cid, generation, method, since in session.execute(
                select(
                    PagerDutyConnection.id,
                    PagerDutyConnection.generation,
                    PagerDutyConnection.auth_method,
                    PagerDutyConnection.status_changed_at,
                ).where(PagerDutyConnection.status == ConnectionStatus.VALIDATING.value)
            )
            if since <= now - timedelta(seconds=STALE_AFTER.get(method, 600))
        ]
    for cid, generation in stuck:
        _finish_invalid(cid, generation, MSG_UNREACHABLE)
    return len(stuck)

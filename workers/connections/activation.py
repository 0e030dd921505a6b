"""Turn a ``validating`` connection into ``connected`` or ``invalid``.

Two ways in: an API key is probed against PagerDuty; an OAuth authorization code is exchanged
for tokens. Both are plain functions called by thin tasks (``tasks/connections.py``). PagerDuty is
called outside any database transaction; the outcome is written in a short transaction that
re-reads the connection under a row lock and checks its generation, so a key replaced or a
workspace disconnected meanwhile is never overwritten by a stale result.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
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
from workers.connections import messages
from workers.core import metrics
from workers.core.audit import audit
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.events import transition
from workers.pagerduty import id_token, oauth
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
from workers.pagerduty.factory import ReaderFactory, pagerduty_client
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Credential, ProbeResult
from workers.pagerduty.transport import shared_http_client
from workers.rotations.locking import lock_connection
from workers.tasking.contract import EXCHANGE_OAUTH_CODE, SYNC_CONNECTION, VALIDATE_API_KEY
from workers.tasking.enqueue import enqueue

log = logging.getLogger(__name__)

Outcome = Literal["connected", "invalid", "stale"]


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


def validate_api_key(
    connection_id: uuid.UUID | str,
    generation: int,
    *,
    client_factory: ReaderFactory = pagerduty_client,
) -> ActivationResult:
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
        assert conn is not None and conn.api_key
        # Running: not driven again before this delivery's hard time limit has passed.
        _push_deadline(session, cid, generation, VALIDATION_RUNNING_SECONDS)
        api_key = conn.api_key
        chosen = conn.region
    credential = Credential(kind="api_key", secret=api_key)
    other = Region.EU if chosen == Region.US else Region.US
    try:
        try:
            region, client, probe = chosen, *_probe(chosen, credential, client_factory)
        except InvalidCredentials:
            region, client, probe = other, *_probe(other, credential, client_factory)
        me = client.me()
    except InvalidCredentials:
        return finish_invalid(cid, generation, messages.KEY_REJECTED)
    except Forbidden as exc:
        return finish_invalid(cid, generation, messages.forbidden(exc))
    except NoApiAccess:
        return finish_invalid(cid, generation, messages.NO_API_ACCESS)
    metrics.incr("rrpd_connection_checks_total", kind="api_key", outcome="connected")
    notices = [n for n in (messages.region_notice(chosen, region), messages.role_notice(me)) if n]
    return finish_connected(
        cid,
        generation,
        key_level="account" if me is None else "user",
        subdomain=_subdomain_from(probe.html_url),
        kind="initial",
        region=region,
        notice=" ".join(notices) or None,
    )


# A validation task ends (or is killed) within its hard time limit; a little more for the commit.
VALIDATION_RUNNING_SECONDS = VALIDATE_API_KEY.time_limit + 5.0


def _push_deadline(session: Session, cid: uuid.UUID, generation: int, seconds: float) -> None:
    session.execute(
        update(PagerDutyConnection)
        .where(
            PagerDutyConnection.id == cid,
            PagerDutyConnection.generation == generation,
            PagerDutyConnection.status == ConnectionStatus.VALIDATING,
        )
        .values(drive_at=utcnow() + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )


def expect_retry(connection_id: uuid.UUID | str, generation: int, countdown: float) -> None:
    """A validation is about to retry after ``countdown``: not driven again before that retry
    has had its time (its message may be lost like any other: then the deadline drives it)."""
    with transaction() as session:
        _push_deadline(
            session, as_uuid(connection_id), generation, countdown + VALIDATION_RUNNING_SECONDS
        )


def _probe(
    region: Region, credential: Credential, make_client: ReaderFactory
) -> tuple[PagerDutyReader, ProbeResult]:
    client = make_client(get_settings().api_base_url(region), credential)
    return client, client.probe()


def _still_validating(
    conn: PagerDutyConnection | None, generation: int, method: AuthMethod
) -> bool:
    return (
        conn is not None
        and conn.generation == generation
        and conn.status == ConnectionStatus.VALIDATING
        and conn.auth_method == method
    )


def _locked_if_validating(
    session: Session, cid: uuid.UUID, generation: int
) -> PagerDutyConnection | None:
    """The connection under its row lock, if it is still the validation this outcome is for."""
    conn = lock_connection(session, cid)
    if conn is None or conn.generation != generation or conn.status != ConnectionStatus.VALIDATING:
        return None
    return conn


def finish_connected(
    cid: uuid.UUID,
    generation: int,
    *,
    kind: str,
    key_level: str | None = None,
    subdomain: str | None = None,
    tokens: oauth.TokenSet | None = None,
    claims: id_token.IdTokenClaims | None = None,
    region: Region | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    authorization_id: uuid.UUID | None = None,
    notice: str | None = None,
) -> ActivationResult:
    with transaction() as session:
        _forget_authorization(session, authorization_id)
        conn = _locked_if_validating(session, cid, generation)
        if conn is None:
            return ActivationResult("stale", str(cid))
        if key_level:
            conn.key_level = KeyLevel(key_level)
        if tokens is not None:
            conn.access_token = tokens.access_token
            conn.refresh_token = tokens.refresh_token or None
            conn.access_token_expires_at = tokens.expires_at
            conn.token_refreshed_at = utcnow()
            conn.granted_scopes = " ".join(sorted(tokens.scopes))
            conn.oauth_client_id = client_id
            conn.oauth_client_secret = client_secret
            conn.api_key = None
        if claims is not None:
            conn.pagerduty_account_id = claims.account_id
            conn.pagerduty_user_id = claims.user_id
            subdomain = claims.subdomain or subdomain
        if region:
            conn.region = region
        if subdomain:
            conn.pagerduty_subdomain = subdomain
        conn.notice = notice
        transition(session, conn, ConnectionStatus.CONNECTED)
        conn.connected_at = utcnow()
        conn.next_sync_at = None
        extra: dict[str, Any] = {"notice": notice} if notice else {}
        audit(
            session,
            conn.workspace_id,
            "pagerduty.connected",
            connection_id=conn.id,
            auth_method=conn.auth_method,
            region=conn.region,
            subdomain=conn.pagerduty_subdomain,
            **extra,
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


def finish_invalid(
    cid: uuid.UUID, generation: int, message: str, authorization_id: uuid.UUID | None = None
) -> ActivationResult:
    with transaction() as session:
        _forget_authorization(session, authorization_id)
        conn = _locked_if_validating(session, cid, generation)
        if conn is None:
            return ActivationResult("stale", str(cid))
        record_invalid(session, conn, message)
    return ActivationResult("invalid", str(cid), message)


def record_invalid(session: Session, conn: PagerDutyConnection, message: str) -> None:
    """End a validation as ``invalid`` in the caller's transaction (the row already locked)."""
    transition(session, conn, ConnectionStatus.INVALID, error=message)
    audit(session, conn.workspace_id, "pagerduty.invalid", connection_id=conn.id, reason=message)
    metrics.incr("rrpd_connection_checks_total", kind="any", outcome="invalid")
    log.info("connection invalid", extra={"connection_id": str(conn.id)})


def give_up(
    connection_id: uuid.UUID | str, generation: int | None, message: str = messages.UNREACHABLE
) -> ActivationResult:
    """After the last retry (or a crash loop): a clear error state, never stuck in validating."""
    cid = as_uuid(connection_id)
    if generation is None:
        with transaction() as session:
            conn = session.get(PagerDutyConnection, cid)
            if conn is None:
                return ActivationResult("stale", str(cid))
            generation = conn.generation
    return finish_invalid(cid, generation, message)


# --- OAuth ---------------------------------------------------------------------------------------


def exchange_oauth_code(
    authorization_id: uuid.UUID | str, *, client_factory: ReaderFactory = pagerduty_client
) -> ActivationResult:
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
        if conn is None or conn.status != ConnectionStatus.VALIDATING:
            return ActivationResult("stale", str(auth.connection_id))
        cid, generation = conn.id, conn.generation
        crashed_mid_exchange = auth.code is None and not exchange_running(conn)
        if auth.code is None and not crashed_mid_exchange:
            # Another delivery (the deadline loop's, or the original that was merely slow)
            # holds the code and is within its time: it records the outcome.
            return ActivationResult("stale", str(cid))
    if crashed_mid_exchange:
        # An earlier delivery took the code and died before recording the outcome. The code
        # is spent (or expired): the only honest outcome is asking for a new login.
        return _finish_oauth_invalid(aid, cid, generation, messages.CODE_REFUSED)
    with transaction() as session:
        conn = _locked_if_validating(session, cid, generation)
        auth = session.execute(
            select(OAuthAuthorization).where(OAuthAuthorization.id == aid).with_for_update()
        ).scalar_one()
        if auth.code is None or conn is None:
            return ActivationResult("stale", str(cid))
        code, verifier = auth.code, auth.code_verifier
        client_id, client_secret = auth.client_id, auth.client_secret
        # Single use on our side too: a redelivered task cannot replay the code.
        auth.code = None
        # Until the exchange's hard time limit has surely passed, nobody drives it again.
        conn.expect_work(utcnow(), EXCHANGE_RUNNING_SECONDS)
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
        return _finish_oauth_invalid(aid, cid, generation, messages.CODE_REFUSED)
    except InvalidClient:
        return _finish_oauth_invalid(aid, cid, generation, messages.CLIENT_REFUSED)
    except (OAuthError, PagerDutyError):
        return _finish_oauth_invalid(aid, cid, generation, messages.UNREACHABLE)
    if tokens.missing_scopes:
        message = messages.missing_scopes(tokens.scopes, oauth.DEFAULT_SCOPES)
        return _finish_oauth_invalid(aid, cid, generation, message)
    try:
        if not tokens.id_token:
            raise IdTokenInvalid("no id_token in the token response", endpoint="token")
        claims = id_token.verify_id_token(
            tokens.id_token,
            oauth.jwks_endpoint(settings.pagerduty_identity_url),
            client_id,
            http=shared_http_client(),
            issuer=oauth.issuer_for(settings.pagerduty_identity_url),
        )
        region = Region(
            id_token.region_for_claims(
                claims, settings.pagerduty_api_url, settings.pagerduty_eu_api_url
            )
        )
    except (IdTokenInvalid, UnknownRegion, PagerDutyError):
        return _finish_oauth_invalid(aid, cid, generation, messages.LOGIN_UNVERIFIED)
    try:
        me = client_factory(settings.api_base_url(region), tokens.credential, max_retries=1).me()
    except PagerDutyError:
        me = None  # the role is advice for the admin, never a reason to refuse the login
    result = finish_connected(
        cid,
        generation,
        kind="initial",
        tokens=tokens,
        claims=claims,
        region=region,
        client_id=client_id,
        client_secret=client_secret,
        authorization_id=aid,
        notice=messages.role_notice(me),
    )
    metrics.incr("rrpd_connection_checks_total", kind="oauth", outcome=result.outcome)
    return result


# The exchange's hard time limit and a little: a delivery holding the code longer has died.
EXCHANGE_RUNNING_SECONDS = EXCHANGE_OAUTH_CODE.time_limit + 5.0


def exchange_running(conn: PagerDutyConnection) -> bool:
    """A delivery that took the authorization code may still be exchanging it: the deadline it
    set when it took the code (``EXCHANGE_RUNNING_SECONDS``) has not passed."""
    return conn.drive_at is not None and conn.drive_at > utcnow()


def _finish_oauth_invalid(
    aid: uuid.UUID, cid: uuid.UUID, generation: int, message: str
) -> ActivationResult:
    return finish_invalid(cid, generation, message, authorization_id=aid)


def _forget_authorization(session: Session, aid: uuid.UUID | None) -> None:
    """The pending login (verifier, client secret copy) goes in the same transaction as the
    outcome: there is never a connected or invalid connection with a usable login beside it."""
    if aid is not None:
        session.execute(delete(OAuthAuthorization).where(OAuthAuthorization.id == aid))

"""The worker half of an OAuth login: trade the callback's code for tokens, verify, connect.

The code is single-use and lives 30 seconds, so it is taken out of the login's row before the
exchange (a redelivered task can never replay it) and the exchange is only tried again within
seconds, when PagerDuty did not answer (``workers.pagerduty.oauth``). Once PagerDuty has issued
the tokens they are kept, encrypted, on the login: verifying the id_token needs PagerDuty's JWKS
over the network, and a JWKS that does not answer must not lose a login whose tokens exist
(pagerduty-facts.md, OAuth). Such a check raises ``VerificationPending``; the task tries again
later from the kept tokens, without the code. The outcome is written by
``workers.connections.activation`` (``finish_connected`` / ``finish_invalid``), which deletes
the login in the same transaction.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    Region,
    utcnow,
)
from workers.connections import messages, pending_login
from workers.connections.activation import ActivationResult, finish_connected, finish_invalid
from workers.core import metrics
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.pagerduty import id_token, oauth
from workers.pagerduty.errors import (
    IdTokenInvalid,
    InvalidClient,
    InvalidGrant,
    OAuthError,
    PagerDutyError,
    RateLimited,
    Transient,
    UnknownRegion,
)
from workers.pagerduty.factory import (
    OAuthFactory,
    ReaderFactory,
    pagerduty_client,
    pagerduty_oauth,
)
from workers.pagerduty.interfaces import PagerDutyOAuth
from workers.tasking.contract import EXCHANGE_OAUTH_CODE


class VerificationPending(Exception):
    """PagerDuty issued the login's tokens (kept on the login) but their id_token could not be
    checked yet: PagerDuty's JWKS did not answer. Try again later; the code is not needed."""

    def __init__(self, reset_after: float | None = None) -> None:
        super().__init__("PagerDuty's signing keys could not be fetched; the check is pending")
        self.reset_after = reset_after


def _locked_login(session: Session, aid: uuid.UUID) -> OAuthAuthorization | None:
    return session.execute(
        select(OAuthAuthorization).where(OAuthAuthorization.id == aid).with_for_update()
    ).scalar_one_or_none()


def exchange_oauth_code(
    authorization_id: uuid.UUID | str,
    *,
    client_factory: ReaderFactory = pagerduty_client,
    oauth_factory: OAuthFactory = pagerduty_oauth,
) -> ActivationResult:
    """Trade the callback's code for tokens (or take the tokens an earlier try kept); check the
    granted scopes and the id_token; connect. Raises ``VerificationPending`` when only the
    id_token check is left and PagerDuty's JWKS did not answer."""
    settings = get_settings()
    aid = as_uuid(authorization_id)
    with transaction() as session:
        # The lock order of the deadlines loop and the disconnect: the connection, then its
        # login (this transaction moves the connection's deadline).
        attached = session.execute(
            select(OAuthAuthorization.connection_id).where(OAuthAuthorization.id == aid)
        ).scalar_one_or_none()
        conn = lock_connection(session, attached) if attached is not None else None
        auth = _locked_login(session, aid)
        if auth is None or auth.connection_id is None:
            return ActivationResult("stale", None)
        if conn is None or conn.id != auth.connection_id:
            return ActivationResult("stale", str(auth.connection_id))
        # A login over a connected connection is its pending credential (checked beside the
        # live credentials, workers.connections.pending_login); any other is the validation.
        beside = pending_login.is_checking_login(conn)
        if not beside and conn.status != ConnectionStatus.VALIDATING:
            # Nothing can use this login any more (e.g. a pending login whose connection went
            # needs_reauth meanwhile): its secrets go now rather than with the hourly sweep.
            session.delete(auth)
            return ActivationResult("stale", str(conn.id))
        cid = conn.id
        generation = conn.pending_generation if beside else conn.generation
        assert generation is not None
        client_id, client_secret = auth.client_id, auth.client_secret
        kept, code, verifier = auth.issued_tokens, auth.code, auth.code_verifier
        running = pending_login.running(conn) if beside else exchange_running(conn)
        if kept is None and code is None and running:
            # Another delivery (the deadlines loop's, or the original that was merely slow)
            # took the code and is within its time: it records the outcome.
            return ActivationResult("stale", str(cid))
        # Single use on our side too: a redelivered task cannot replay the code.
        auth.code = None
        if kept is not None or code is not None:
            # Until this delivery's hard time limit has surely passed, nobody drives it again.
            if beside:
                pending_login.push_deadline(conn, utcnow(), EXCHANGE_RUNNING_SECONDS)
            else:
                conn.expect_work(utcnow(), EXCHANGE_RUNNING_SECONDS)

    def fail(message: str, *, lost: bool = False) -> ActivationResult:
        if beside:
            status = PendingStatus.LOST if lost else PendingStatus.REJECTED
            return pending_login.end_login(aid, cid, generation, status, message)
        return _finish_invalid(aid, cid, generation, message)

    identity = oauth_factory(client_id, client_secret)
    if kept is not None:
        tokens = oauth.TokenSet.from_json(kept)  # an earlier try exchanged the code
    elif code is None:
        # An earlier delivery took the code and died before PagerDuty's answer was kept. The
        # code is spent (or expired): the only honest outcome is asking for a new login.
        return fail(messages.CODE_REFUSED, lost=True)
    else:
        try:
            tokens = identity.exchange_code(code, settings.oauth_redirect_uri, verifier)
        except InvalidGrant:
            return fail(messages.CODE_REFUSED)
        except InvalidClient:
            return fail(messages.CLIENT_REFUSED)
        except (OAuthError, PagerDutyError):
            return fail(messages.UNREACHABLE, lost=True)
        if tokens.missing_scopes:
            return fail(messages.missing_scopes(tokens.scopes, oauth.DEFAULT_SCOPES))
        if not _keep(aid, tokens):
            return ActivationResult("stale", str(cid))  # the login was ended meanwhile
    return _verify_and_connect(
        aid,
        cid,
        generation,
        tokens,
        client_id,
        client_secret,
        client_factory,
        identity,
        beside=beside,
    )


# The exchange's hard time limit and a little: a delivery holding the code longer has died.
EXCHANGE_RUNNING_SECONDS = EXCHANGE_OAUTH_CODE.time_limit + 5.0


def exchange_running(conn: PagerDutyConnection) -> bool:
    """A delivery that took the authorization code may still be exchanging it: the deadline it
    set when it took the code (``EXCHANGE_RUNNING_SECONDS``) has not passed."""
    return conn.drive_at is not None and conn.drive_at > utcnow()


def expect_retry(authorization_id: uuid.UUID | str, countdown: float) -> None:
    """The id_token check retries after ``countdown``: its login's connection is not driven
    again before that retry has had its time."""
    with transaction() as session:
        auth = session.get(OAuthAuthorization, as_uuid(authorization_id))
        conn = (
            lock_connection(session, auth.connection_id)
            if auth is not None and auth.connection_id is not None
            else None
        )
        if pending_login.is_checking_login(conn):
            assert conn is not None
            pending_login.push_deadline(conn, utcnow(), countdown + EXCHANGE_RUNNING_SECONDS)
        elif conn is not None and conn.status == ConnectionStatus.VALIDATING:
            conn.expect_work(utcnow(), countdown + EXCHANGE_RUNNING_SECONDS)


def _keep(aid: uuid.UUID, tokens: oauth.TokenSet) -> bool:
    """Keep what PagerDuty issued (encrypted) before anything else can fail."""
    with transaction() as session:
        auth = _locked_login(session, aid)
        if auth is None:
            return False
        auth.issued_tokens = tokens.to_json()
        return True


def _verify_and_connect(
    aid: uuid.UUID,
    cid: uuid.UUID,
    generation: int,
    tokens: oauth.TokenSet,
    client_id: str,
    client_secret: str,
    client_factory: ReaderFactory,
    identity: PagerDutyOAuth,
    *,
    beside: bool = False,
) -> ActivationResult:
    settings = get_settings()
    try:
        if not tokens.id_token:
            raise IdTokenInvalid("no id_token in the token response", endpoint="token")
        claims = identity.verify_id_token(tokens.id_token)
        region = Region(
            id_token.region_for_claims(
                claims, settings.pagerduty_api_url, settings.pagerduty_eu_api_url
            )
        )
    except (Transient, RateLimited) as exc:
        # The JWKS did not answer after its short retries: not a verdict on the login.
        raise VerificationPending(getattr(exc, "reset_after", None)) from None
    except (IdTokenInvalid, UnknownRegion, PagerDutyError):
        if beside:
            return pending_login.end_login(
                aid, cid, generation, PendingStatus.REJECTED, messages.LOGIN_UNVERIFIED
            )
        return _finish_invalid(aid, cid, generation, messages.LOGIN_UNVERIFIED)
    try:
        me = client_factory(settings.api_base_url(region), tokens.credential, max_retries=1).me()
    except PagerDutyError:
        me = None  # the role is advice for the admin, never a reason to refuse the login
    if beside:
        proven = pending_login.finish_proven(
            aid,
            cid,
            generation,
            tokens=tokens,
            claims=claims,
            region=region,
            client_id=client_id,
            client_secret=client_secret,
            notice=messages.role_notice(me),
        )
        metrics.incr("rrpd_connection_checks_total", kind="oauth", outcome=proven.outcome)
        return proven
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
        acting_user=me,
    )
    metrics.incr("rrpd_connection_checks_total", kind="oauth", outcome=result.outcome)
    return result


def give_up_login(
    authorization_id: uuid.UUID | str, message: str = messages.UNREACHABLE
) -> ActivationResult:
    """The exchange task is out of tries (or failed for good): a clear error, and the login
    (kept tokens included) deleted, never left ``validating``; a pending login ends ``lost``.
    Rows attached to a connection belong to its current generation or its pending login
    (``install_credentials`` and ``stage_login`` delete superseded ones)."""
    aid = as_uuid(authorization_id)
    with transaction() as session:
        auth = session.get(OAuthAuthorization, aid)
        conn = (
            session.get(PagerDutyConnection, auth.connection_id)
            if auth is not None and auth.connection_id is not None
            else None
        )
        if conn is None:
            if auth is not None:
                session.delete(auth)
            return ActivationResult("stale", None)
        cid, generation = conn.id, conn.generation
        beside = conn.pending_generation if pending_login.is_checking_login(conn) else None
    if beside is not None:
        # Not finished in time is no verdict on the login: "lost", the live one untouched.
        return pending_login.end_login(aid, cid, beside, PendingStatus.LOST, message)
    return _finish_invalid(aid, cid, generation, message)


def _finish_invalid(
    aid: uuid.UUID, cid: uuid.UUID, generation: int, message: str
) -> ActivationResult:
    return finish_invalid(cid, generation, message, authorization_id=aid)

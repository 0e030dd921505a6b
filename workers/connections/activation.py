"""Turn a ``validating`` connection into ``connected`` or ``invalid``.

Two ways in: an API key is probed against PagerDuty (here); an OAuth authorization code is
exchanged for tokens (``workers.connections.oauth_exchange``), both ending in
``finish_connected`` or ``finish_invalid``. Plain functions called by thin tasks
(``tasks/connections.py``). PagerDuty is called outside any transaction; the outcome is written
in a short one that re-reads the connection under a row lock and checks its generation, so a
key replaced or a workspace disconnected meanwhile is never overwritten by a stale result.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, update
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
from workers.connections import account_change, messages, pending
from workers.connections import acting_user as acting
from workers.core import metrics
from workers.core.audit import audit
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.events import transition
from workers.pagerduty import id_token, oauth
from workers.pagerduty.errors import (
    Forbidden,
    InvalidCredentials,
    NoApiAccess,
    Transient,
)
from workers.pagerduty.factory import ReaderFactory, pagerduty_client
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Credential, ProbeResult, User
from workers.tasking.contract import SYNC_CONNECTION, VALIDATE_API_KEY
from workers.tasking.enqueue import enqueue

log = logging.getLogger(__name__)

# "pending_*": the check of a pending credential (workers.connections.pending) ended.
Outcome = Literal[
    "connected",
    "invalid",
    "stale",
    "pending_accepted",
    "pending_rejected",
    "pending_lost",
    "pending_account_change",
]


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
    live_subdomain: str | None = None  # the live account, when a pending key is checked
    with transaction() as session:
        conn = session.get(PagerDutyConnection, cid)
        if pending.is_checking(conn, generation) and conn is not None and conn.pending_api_key:
            # A replacement key (not a login: its exchange checks it) beside the live one.
            assert conn is not None and conn.pending_api_key and conn.pending_region
            api_key, chosen = conn.pending_api_key, conn.pending_region
            live_subdomain = conn.pagerduty_subdomain
        elif _still_validating(conn, generation, AuthMethod.API_KEY):
            assert conn is not None and conn.api_key
            api_key, chosen = conn.api_key, conn.region
        else:
            return ActivationResult("stale", str(cid))
        # Running: not driven again before this delivery's hard time limit has passed.
        _push_deadline(session, cid, generation, VALIDATION_RUNNING_SECONDS)
    credential = Credential(kind="api_key", secret=api_key)
    other = Region.EU if chosen == Region.US else Region.US
    try:
        try:
            region, client, probe = chosen, *_probe(chosen, credential, client_factory)
        except InvalidCredentials:
            region, client, probe = other, *_probe(other, credential, client_factory)
        me = client.me()
        subdomain = _subdomain_from(probe.html_url)
        # Another account: what a switch would do to bound rotations needs its schedules.
        schedules = (
            account_change.list_schedules(client)
            if live_subdomain and subdomain and subdomain != live_subdomain
            else None
        )
    except InvalidCredentials:
        return finish_invalid(cid, generation, messages.KEY_REJECTED)
    except Forbidden as exc:
        return finish_invalid(cid, generation, messages.forbidden(exc))
    except NoApiAccess:
        return finish_invalid(cid, generation, messages.NO_API_ACCESS)
    notices = [n for n in (messages.region_notice(chosen, region), messages.role_notice(me)) if n]
    if (
        proven := _finish_pending_proven(
            cid,
            generation,
            key_level="account" if me is None else "user",
            subdomain=subdomain,
            region=region,
            notice=" ".join(notices) or None,
            schedules=schedules,
        )
    ) is not None:
        return proven
    metrics.incr("rrpd_connection_checks_total", kind="api_key", outcome="connected")
    return finish_connected(
        cid,
        generation,
        key_level="account" if me is None else "user",
        subdomain=subdomain,
        kind="initial",
        region=region,
        notice=" ".join(notices) or None,
    )


# A validation task ends (or is killed) within its hard time limit; a little more for the commit.
VALIDATION_RUNNING_SECONDS = VALIDATE_API_KEY.time_limit + 5.0


def _push_deadline(session: Session, cid: uuid.UUID, generation: int, seconds: float) -> None:
    at = utcnow() + timedelta(seconds=seconds)
    session.execute(
        update(PagerDutyConnection)
        .where(
            PagerDutyConnection.id == cid,
            PagerDutyConnection.generation == generation,
            PagerDutyConnection.status == ConnectionStatus.VALIDATING,
        )
        .values(drive_at=at)
        .execution_options(synchronize_session=False)
    )
    # Or the check of a pending credential: its own deadline.
    session.execute(
        update(PagerDutyConnection)
        .where(
            PagerDutyConnection.id == cid,
            PagerDutyConnection.pending_generation == generation,
            PagerDutyConnection.pending_status == PendingStatus.CHECKING,
        )
        .values(pending_drive_at=at)
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
    """The connection under its row lock (before its login's), if still this validation."""
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
    acting_user: User | None = None,
) -> ActivationResult:
    with transaction() as session:
        conn = _locked_if_validating(session, cid, generation)
        _forget_authorization(session, authorization_id)
        if conn is None:
            return ActivationResult("stale", str(cid))
        _forget_logins_of(session, cid)
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
        acting.remember(conn, acting_user)
        transition(session, conn, ConnectionStatus.CONNECTED)
        conn.connected_at = utcnow()
        conn.next_sync_at = None
        extra: dict[str, Any] = {"notice": notice} if notice else {}
        audit(
            session,
            conn.workspace_id,
            AuditAction.CONNECTED,
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


def _finish_pending_proven(
    cid: uuid.UUID,
    generation: int,
    *,
    key_level: str,
    subdomain: str | None,
    region: Region,
    notice: str | None,
    schedules: dict[str, str] | None = None,
) -> ActivationResult | None:
    """Swap a proven pending key in; None when ``generation`` is not a pending check."""
    with transaction() as session:
        conn = lock_connection(session, cid)
        if conn is None or conn.generation == generation:
            return None  # an ordinary validation (or a stale one: finish_connected says so)
        if not pending.is_checking(conn, generation):
            return ActivationResult("stale", str(cid))
        live = conn.pagerduty_subdomain
        if live and subdomain and subdomain != live:
            # Another account: never swapped in silently (its schedules are not these); it
            # waits for the admin's confirmation, with what it would do to bound rotations.
            if schedules is None:  # the live account changed during the check: check again
                raise Transient("the live account changed during the check")
            message = account_change.record_account_change(
                session,
                conn,
                subdomain=subdomain,
                key_level=key_level,
                region=region,
                notice=notice,
                schedules=schedules,
            )
            return ActivationResult("pending_account_change", str(cid), message)
        pending.record_proven(
            session, conn, key_level=key_level, subdomain=subdomain, region=region, notice=notice
        )
    return ActivationResult("pending_accepted", str(cid))


def _finish_pending(
    cid: uuid.UUID, generation: int, status: PendingStatus, message: str
) -> ActivationResult | None:
    """End a pending check as ``status``; None when ``generation`` is not a pending check."""
    with transaction() as session:
        conn = lock_connection(session, cid)
        if not pending.is_checking(conn, generation):
            return None
        assert conn is not None
        pending.record_ended(session, conn, status, message)
    outcome: Outcome = "pending_rejected" if status is PendingStatus.REJECTED else "pending_lost"
    return ActivationResult(outcome, str(cid), message)


def finish_invalid(
    cid: uuid.UUID, generation: int, message: str, authorization_id: uuid.UUID | None = None
) -> ActivationResult:
    ended = _finish_pending(
        cid, generation, PendingStatus.REJECTED, messages.pending_rejected(message)
    )
    if ended is not None:
        return ended
    with transaction() as session:
        conn = _locked_if_validating(session, cid, generation)
        _forget_authorization(session, authorization_id)
        if conn is None:
            return ActivationResult("stale", str(cid))
        record_invalid(session, conn, message)
    return ActivationResult("invalid", str(cid), message)


def record_invalid(session: Session, conn: PagerDutyConnection, message: str) -> None:
    """End a validation as ``invalid`` in the caller's transaction (the row already locked):
    its logins go with it."""
    _forget_logins_of(session, conn.id)
    transition(session, conn, ConnectionStatus.INVALID, error=message)
    audit(session, conn.workspace_id, AuditAction.INVALID, connection_id=conn.id, reason=message)
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
    # A pending check that could not be finished did not prove the key wrong: "lost".
    ended = _finish_pending(cid, generation, PendingStatus.LOST, messages.pending_lost(message))
    return ended or finish_invalid(cid, generation, message)


def _forget_authorization(session: Session, aid: uuid.UUID | None) -> None:
    """The pending login (verifier, client secret copy, kept tokens) goes in the same
    transaction as the outcome: there is never a connected or invalid connection with a usable
    login beside it."""
    if aid is not None:
        session.execute(delete(OAuthAuthorization).where(OAuthAuthorization.id == aid))


def _forget_logins_of(session: Session, cid: uuid.UUID) -> None:
    """Once the validation is decided, no login of the connection is needed any more (one the
    deadline or a give-up ended keeps its secrets otherwise). Under the connection's lock and
    generation check: a newer login's row is never attached before its own generation."""
    session.execute(
        delete(OAuthAuthorization)
        .where(OAuthAuthorization.connection_id == cid)
        .execution_options(synchronize_session=False)
    )

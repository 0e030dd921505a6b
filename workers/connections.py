"""The API side of a workspace's PagerDuty link: plain functions over a ``Session``.

The HTTP API (``api_stub``) authenticates the caller, opens one transaction per request and
calls these functions; tests call them directly. Each function checks what it needs (role,
workspace, state), writes its rows and an ``AuditEvent``, and enqueues work with
``workers.tasking.enqueue.enqueue`` (published only after the caller's transaction commits).
They never commit: the caller's ``workers.core.db.transaction()`` does.

Failures are ``ServiceError`` subclasses carrying an HTTP-like status, a stable machine code and
a message written for a workspace admin. No message, audit detail or task argument ever holds a
secret.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    Member,
    OAuthAuthorization,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Region,
    Role,
    Rotation,
    RotationMode,
    SyncRun,
    Workspace,
    utcnow,
)
from workers.core import crypto
from workers.core.access import (
    Actor,
    Conflict,
    Invalid,
    Missing,
    require_manager,
)
from workers.core.audit import audit
from workers.core.settings import get_settings
from workers.pagerduty.oauth import DEFAULT_SCOPES
from workers.tasking.contract import (
    EXCHANGE_OAUTH_CODE,
    SYNC_CONNECTION,
    VALIDATE_API_KEY,
)
from workers.tasking.enqueue import enqueue

# What an OAuth login asks for (why each: workers.pagerduty.oauth.DEFAULT_SCOPES).
OAUTH_SCOPES: tuple[str, ...] = DEFAULT_SCOPES

_API_KEY_RE = re.compile(r"^[\x21-\x7e]{16,128}$")
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

# Plain words for a status, shown when the connection has no specific last_error.
STATUS_WORDS = {
    ConnectionStatus.VALIDATING: "Checking the PagerDuty credentials.",
    ConnectionStatus.CONNECTED: "Connected to PagerDuty.",
    ConnectionStatus.NEEDS_REAUTH: "PagerDuty needs you to log in again.",
    ConnectionStatus.INVALID: "PagerDuty refused these credentials.",
    ConnectionStatus.DISCONNECTING: "Disconnecting from PagerDuty.",
}


# --- input checks -------------------------------------------------------------------------------


def normalize_api_key(raw: str) -> str:
    """Strip and check an API key's shape; the message never repeats the key."""
    key = (raw or "").strip()
    if not _API_KEY_RE.match(key):
        raise Invalid(
            "api_key must be 16 to 128 printable characters without spaces "
            "(PagerDuty API keys look like 'u+abc...' or a 20-character token).",
            code="invalid_api_key",
        )
    return key


def normalize_region(raw: str | None) -> str:
    region = (raw or Region.US.value).strip().lower()
    if region not in {r.value for r in Region}:
        raise Invalid("region must be 'us' or 'eu'.", code="invalid_region")
    return region


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


# --- connections --------------------------------------------------------------------------------


def live_connection(
    session: Session, workspace_id: uuid.UUID, *, lock: bool = False
) -> PagerDutyConnection | None:
    stmt = select(PagerDutyConnection).where(
        PagerDutyConnection.workspace_id == workspace_id,
        PagerDutyConnection.status != ConnectionStatus.DISCONNECTED.value,
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def _lock_workspace(session: Session, workspace_id: uuid.UUID) -> Workspace:
    """Serialize credential changes per workspace, so two first connects cannot both insert.

    FOR NO KEY UPDATE (``key_share=True``) does not block rows that merely reference the
    workspace (workers inserting audit events or task records), so it cannot deadlock them.
    """
    ws = session.execute(
        select(Workspace).where(Workspace.id == workspace_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if ws is None:
        raise Missing("This workspace does not exist.", code="workspace_not_found")
    return ws


def _install_credentials(
    session: Session,
    workspace_id: uuid.UUID,
    *,
    actor_member_id: uuid.UUID | None,
    auth_method: AuthMethod,
    region: str,
    api_key_encrypted: str | None = None,
    oauth_client_id: str | None = None,
    oauth_client_secret_encrypted: str | None = None,
) -> tuple[PagerDutyConnection, bool]:
    """Create the live connection or replace its credentials; status ``validating``.

    Returns (connection, replaced). Replacing bumps ``generation`` so tasks started with the old
    credentials cannot write. Account facts (account id, subdomain) are kept until the
    validation task sees the new credentials, so it can tell whether the account changed.
    """
    _lock_workspace(session, workspace_id)
    conn = live_connection(session, workspace_id, lock=True)
    now = utcnow()
    replaced = conn is not None
    if conn is None:
        conn = PagerDutyConnection(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            status=ConnectionStatus.VALIDATING.value,
            generation=1,
            status_changed_at=now,
        )
        session.add(conn)
    else:
        if conn.status == ConnectionStatus.DISCONNECTING.value:
            raise Conflict(
                "PagerDuty is being disconnected from this workspace; wait until that finishes, "
                "then connect again.",
                code="disconnecting",
            )
        conn.transition(ConnectionStatus.VALIDATING)
        conn.generation = conn.generation + 1
        # Our copies of the old credentials go at once. PagerDuty offers no API to revoke OAuth
        # tokens; they die on their own (access: a day, refresh: 30 days unused).
        conn.clear_credentials()
        conn.token_refreshed_at = None
        conn.granted_scopes = None
        conn.key_level = None
    conn.auth_method = auth_method.value
    conn.region = region
    conn.api_key_encrypted = api_key_encrypted
    conn.oauth_client_id = oauth_client_id
    conn.oauth_client_secret_encrypted = oauth_client_secret_encrypted
    conn.connected_by_member_id = actor_member_id
    conn.connected_at = now
    conn.last_error = None
    conn.last_error_at = None
    conn.notice = None
    conn.consecutive_sync_failures = 0
    session.flush()
    return conn, replaced


@dataclass(frozen=True)
class Enqueued:
    connection: PagerDutyConnection
    task_id: str


def set_api_key(session: Session, actor: Actor, api_key: str, region: str = "us") -> Enqueued:
    """Connect with an API key, or replace the key of the live connection ("Edit API key")."""
    require_manager(actor)
    key = normalize_api_key(api_key)
    region = normalize_region(region)
    conn, replaced = _install_credentials(
        session,
        actor.workspace_id,
        actor_member_id=actor.member_id,
        auth_method=AuthMethod.API_KEY,
        region=region,
        api_key_encrypted=crypto.encrypt(key),
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
        "pagerduty.connect.api_key",
        actor_member_id=actor.member_id,
        connection_id=conn.id,
        region=region,
        generation=conn.generation,
        replaced=replaced,
        task_id=task_id,
    )
    return Enqueued(conn, task_id)


# --- OAuth --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthStart:
    authorization_id: uuid.UUID
    authorization_url: str
    expires_at: datetime


def start_oauth(
    session: Session,
    actor: Actor,
    client_id: str,
    client_secret: str,
    region: str = "us",
    *,
    now: datetime | None = None,
) -> OAuthStart:
    """Begin a PagerDuty OAuth login: a single-use state (stored hashed) and a PKCE verifier."""
    from workers.pagerduty.oauth import build_authorization_url, new_code_verifier, new_state

    require_manager(actor)
    client_id = (client_id or "").strip()
    client_secret = (client_secret or "").strip()
    if not _CLIENT_ID_RE.match(client_id):
        raise Invalid(
            "client_id must be 1 to 200 printable characters without spaces.",
            code="invalid_client_id",
        )
    if not client_secret or len(client_secret) > 500 or any(c.isspace() for c in client_secret):
        raise Invalid(
            "client_secret must be 1 to 500 characters without spaces.",
            code="invalid_client_secret",
        )
    region = normalize_region(region)
    current = live_connection(session, actor.workspace_id)
    if current is not None and current.status == ConnectionStatus.DISCONNECTING.value:
        raise Conflict(
            "PagerDuty is being disconnected from this workspace; wait until that finishes, "
            "then connect again.",
            code="disconnecting",
        )
    settings = get_settings()
    now = now or utcnow()
    state = new_state()
    verifier = new_code_verifier()
    auth = OAuthAuthorization(
        id=uuid.uuid4(),
        workspace_id=actor.workspace_id,
        state_hash=state_hash(state),
        code_verifier_encrypted=crypto.encrypt(verifier),
        client_id=client_id,
        client_secret_encrypted=crypto.encrypt(client_secret),
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
        "pagerduty.connect.oauth_started",
        actor_member_id=actor.member_id,
        authorization_id=auth.id,
        region=region,
        client_id=client_id,
    )
    session.flush()
    return OAuthStart(auth.id, url, auth.expires_at)


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
    if result.rowcount == 1 and auth is not None:
        return auth, None
    if auth is not None and auth.consumed_at is None and auth.expires_at <= now:
        return None, "state_expired"
    return None, "state_invalid"  # unknown (forged) or already used (replayed)


def handle_oauth_callback(
    session: Session,
    *,
    state: str | None,
    code: str | None = None,
    error: str | None = None,
    now: datetime | None = None,
) -> CallbackOutcome:
    """PagerDuty sent the browser back. The single-use, unexpired state is the only credential.

    The state is consumed whatever the outcome (denied, missing code...), so it can never be
    used twice. On success the code is stored encrypted and the exchange task is enqueued.
    """
    now = now or utcnow()
    auth, reason = _consume_state(session, state, now)
    if auth is None:
        return _outcome("error", reason)
    workspace_id = auth.workspace_id
    who = auth.requested_by_member_id

    if error:
        if error == "access_denied":
            audit(
                session,
                workspace_id,
                "pagerduty.connect.oauth_denied",
                actor_member_id=who,
                authorization_id=auth.id,
            )
            return _outcome("denied", workspace_id=workspace_id)
        reason = error if error in _OAUTH_ERRORS else "authorization_failed"
        audit(
            session,
            workspace_id,
            "pagerduty.connect.oauth_failed",
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
        or not Role(member.role).may_manage_integrations
    ):
        audit(
            session,
            workspace_id,
            "pagerduty.connect.oauth_failed",
            actor_member_id=who,
            authorization_id=auth.id,
            reason="forbidden",
        )
        return _outcome("error", "forbidden", workspace_id=workspace_id)

    try:
        conn, replaced = _install_credentials(
            session,
            workspace_id,
            actor_member_id=who,
            auth_method=AuthMethod.OAUTH,
            region=auth.region,
            oauth_client_id=auth.client_id,
            oauth_client_secret_encrypted=auth.client_secret_encrypted,
        )
    except (Conflict, Missing) as exc:
        return _outcome("error", exc.code, workspace_id=workspace_id)

    auth.code_encrypted = crypto.encrypt(code)
    auth.code_received_at = now
    auth.connection_id = conn.id
    task_id = enqueue(
        session, EXCHANGE_OAUTH_CODE, workspace_id=workspace_id, authorization_id=auth.id
    )
    audit(
        session,
        workspace_id,
        "pagerduty.connect.oauth",
        actor_member_id=who,
        authorization_id=auth.id,
        connection_id=conn.id,
        region=auth.region,
        generation=conn.generation,
        replaced=replaced,
        task_id=task_id,
    )
    session.flush()
    return _outcome("connecting", task_id=task_id, workspace_id=workspace_id, connection_id=conn.id)


def connected_connection(session: Session, workspace_id: uuid.UUID) -> PagerDutyConnection:
    """The live connection, which must be ``connected`` (else ``Conflict``)."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        raise Conflict("PagerDuty is not connected to this workspace.", code="not_connected")
    if conn.status != ConnectionStatus.CONNECTED.value:
        raise Conflict(
            f"The PagerDuty connection is {conn.status.replace('_', ' ')}, not connected.",
            code="connection_not_ready",
        )
    return conn


# --- status -------------------------------------------------------------------------------------


def connection_status(session: Session, workspace_id: uuid.UUID) -> dict[str, Any]:
    """What the integrations page shows. ``{"status": "not_connected", ...}`` when not linked."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        return {
            "status": "not_connected",
            "status_message": "PagerDuty is not connected.",
            "connection_id": None,
            "auth_method": None,
            "region": None,
            "account_subdomain": None,
            "key_level": None,
            "connected_by": None,
            "connected_at": None,
            "status_changed_at": None,
            "last_error": None,
            "last_error_at": None,
            "last_synced_at": None,
            "last_sync": None,
            "user_count": 0,
            "schedule_count": 0,
            "linked_users": 0,
            "total_users": 0,
            "inactive_users": 0,
            "linked_summary": "0 of 0 users linked to members",
            "notice": None,
        }
    connected_by = None
    if conn.connected_by_member_id is not None:
        m = session.get(Member, conn.connected_by_member_id)
        if m is not None:
            connected_by = {"member_id": m.id, "name": m.display_name, "email": m.email}
    run = session.execute(
        select(SyncRun)
        .where(SyncRun.connection_id == conn.id)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    last_sync = None
    if run is not None:
        last_sync = {
            "status": run.status,
            "kind": run.kind,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_ms": run.duration_ms,
            "rows_created": run.rows_created,
            "rows_updated": run.rows_updated,
            "rows_deleted": run.rows_deleted,
            "requests_made": run.requests_made,
            "error": run.error,
        }
    total_users, linked_users, inactive_users = session.execute(
        select(
            func.count().filter(PagerDutyUser.active),
            func.count(PagerDutyUser.member_id),
            func.count().filter(~PagerDutyUser.active),
        ).where(PagerDutyUser.connection_id == conn.id)
    ).one()
    schedule_count = session.execute(
        select(func.count()).where(PagerDutySchedule.connection_id == conn.id)
    ).scalar_one()
    status = ConnectionStatus(conn.status)
    return {
        "status": conn.status,
        "status_message": conn.last_error
        if conn.last_error and status is not ConnectionStatus.CONNECTED
        else STATUS_WORDS.get(status, conn.status),
        "connection_id": conn.id,
        "auth_method": conn.auth_method,
        "region": conn.region,
        "account_subdomain": conn.pagerduty_subdomain,
        "key_level": conn.key_level,
        "connected_by": connected_by,
        "connected_at": conn.connected_at,
        "status_changed_at": conn.status_changed_at,
        "last_error": conn.last_error,
        "last_error_at": conn.last_error_at,
        "last_synced_at": conn.last_synced_at,
        "last_sync": last_sync,
        "user_count": total_users,
        "schedule_count": schedule_count,
        "linked_users": linked_users,
        "total_users": total_users,
        "inactive_users": inactive_users,
        "linked_summary": f"{linked_users} of {total_users} users linked to members"
        + (f" ({inactive_users} inactive in PagerDuty)" if inactive_users else ""),
        "notice": conn.notice,
    }


# --- schedules and rotations --------------------------------------------------------------------


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_schedules(
    session: Session,
    workspace_id: uuid.UUID,
    query: str | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Mirrored schedules of the live connection whose name contains ``query`` (any case)."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        return [], 0
    where = [PagerDutySchedule.connection_id == conn.id]
    if query and query.strip():
        where.append(
            func.lower(PagerDutySchedule.name).like(
                _like_pattern(query.strip().lower()), escape="\\"
            )
        )
    total = session.execute(select(func.count()).where(*where)).scalar_one()
    counts = (
        select(
            PagerDutyScheduleMember.schedule_pagerduty_id.label("sid"),
            func.count().label("n"),
        )
        .where(PagerDutyScheduleMember.connection_id == conn.id)
        .group_by(PagerDutyScheduleMember.schedule_pagerduty_id)
        .subquery()
    )
    rows = session.execute(
        select(PagerDutySchedule, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.sid == PagerDutySchedule.pagerduty_id)
        .where(*where)
        .order_by(func.lower(PagerDutySchedule.name), PagerDutySchedule.pagerduty_id)
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        {
            "id": s.pagerduty_id,
            "name": s.name,
            "time_zone": s.time_zone,
            "version": s.version,
            "member_count": n,
            "synced_at": s.synced_at,
        }
        for s, n in rows
    ]
    return items, total


def _member_view(m: Member) -> dict[str, Any]:
    return {"id": m.id, "name": m.display_name, "email": m.email}


def list_rotations(session: Session, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    rotations = (
        session.execute(
            select(Rotation)
            .where(Rotation.workspace_id == workspace_id)
            .order_by(func.lower(Rotation.name), Rotation.id)
        )
        .unique()
        .scalars()
        .all()
    )
    conn = live_connection(session, workspace_id)
    bound_ids = {r.pagerduty_schedule_id for r in rotations if r.pagerduty_schedule_id}
    names: dict[str, str] = {}
    unmatched: dict[str, list[dict[str, Any]]] = {sid: [] for sid in bound_ids}
    if conn is not None and bound_ids:
        names = dict(
            session.execute(
                select(PagerDutySchedule.pagerduty_id, PagerDutySchedule.name).where(
                    PagerDutySchedule.connection_id == conn.id,
                    PagerDutySchedule.pagerduty_id.in_(bound_ids),
                )
            ).all()
        )
        rows = session.execute(
            select(
                PagerDutyOnCall.schedule_pagerduty_id,
                PagerDutyOnCall.user_pagerduty_id,
                PagerDutyUser,
            )
            .outerjoin(
                PagerDutyUser,
                and_(
                    PagerDutyUser.connection_id == PagerDutyOnCall.connection_id,
                    PagerDutyUser.pagerduty_id == PagerDutyOnCall.user_pagerduty_id,
                ),
            )
            .where(
                PagerDutyOnCall.connection_id == conn.id,
                PagerDutyOnCall.schedule_pagerduty_id.in_(bound_ids),
            )
            .order_by(PagerDutyOnCall.schedule_pagerduty_id, PagerDutyOnCall.user_pagerduty_id)
        ).all()
        for sid, uid, user in rows:
            if user is None:
                unmatched[sid].append(
                    {"pagerduty_user_id": uid, "name": None, "email": None, "active": True}
                )
            elif user.member_id is None:
                unmatched[sid].append(
                    {
                        "pagerduty_user_id": uid,
                        "name": user.name,
                        "email": user.email,
                        "active": user.active,
                    }
                )
    out = []
    for r in rotations:
        sid = r.pagerduty_schedule_id
        out.append(
            {
                "id": r.id,
                "name": r.name,
                "mode": r.mode,
                "schedule": {"id": sid, "name": names.get(sid)} if sid else None,
                "bound_at": r.bound_at,
                "last_synced_at": r.last_synced_at,
                "members": [_member_view(rm.member) for rm in r.members],
                "on_duty": [
                    _member_view(d.member)
                    for d in sorted(r.on_duty, key=lambda d: (d.since, d.member.display_name))
                ],
                "unmatched_on_call": unmatched.get(sid, []) if sid else [],
            }
        )
    return out


def _rotation_for_update(session: Session, workspace_id: uuid.UUID, rotation_id: uuid.UUID):
    rotation = session.execute(
        select(Rotation)
        .where(Rotation.id == rotation_id, Rotation.workspace_id == workspace_id)
        .with_for_update()
    ).scalar_one_or_none()
    if rotation is None:
        raise Missing("This rotation does not exist in this workspace.", code="rotation_not_found")
    return rotation


@dataclass(frozen=True)
class Bound:
    rotation: Rotation
    task_id: str


def bind_rotation(
    session: Session, actor: Actor, rotation_id: uuid.UUID, schedule_id: str
) -> Bound:
    """Bind a rotation to a mirrored schedule of the connected account; sync to fill it."""
    require_manager(actor)
    schedule_id = (schedule_id or "").strip()
    if not schedule_id or len(schedule_id) > 64:
        raise Invalid("schedule_id must be a PagerDuty schedule id.", code="invalid_schedule_id")
    rotation = _rotation_for_update(session, actor.workspace_id, rotation_id)
    conn = connected_connection(session, actor.workspace_id)
    schedule = session.execute(
        select(PagerDutySchedule).where(
            PagerDutySchedule.connection_id == conn.id,
            PagerDutySchedule.pagerduty_id == schedule_id,
        )
    ).scalar_one_or_none()
    if schedule is None:
        raise Missing(
            "No such schedule in the connected PagerDuty account (as of the last sync).",
            code="schedule_not_found",
        )
    previous = rotation.pagerduty_schedule_id
    if previous != schedule_id:
        rotation.mode = RotationMode.PAGERDUTY.value
        rotation.pagerduty_schedule_id = schedule_id
        rotation.bound_at = utcnow()
    task_id = enqueue(
        session,
        SYNC_CONNECTION,
        workspace_id=actor.workspace_id,
        connection_id=conn.id,
        kind="binding",
    )
    audit(
        session,
        actor.workspace_id,
        "rotation.pagerduty.bind",
        actor_member_id=actor.member_id,
        rotation_id=rotation.id,
        schedule_id=schedule_id,
        previous_schedule_id=previous,
        connection_id=conn.id,
        task_id=task_id,
    )
    session.flush()
    return Bound(rotation, task_id)


def unbind_rotation(session: Session, actor: Actor, rotation_id: uuid.UUID) -> Rotation:
    """Make the rotation manual again, keeping its members and who is on duty."""
    require_manager(actor)
    rotation = _rotation_for_update(session, actor.workspace_id, rotation_id)
    if rotation.mode != RotationMode.MANUAL.value:
        previous = rotation.pagerduty_schedule_id
        rotation.make_manual()
        audit(
            session,
            actor.workspace_id,
            "rotation.pagerduty.unbind",
            actor_member_id=actor.member_id,
            rotation_id=rotation.id,
            previous_schedule_id=previous,
        )
        session.flush()
    return rotation


def rotation_view(session: Session, workspace_id: uuid.UUID, rotation_id: uuid.UUID):
    for item in list_rotations(session, workspace_id):
        if item["id"] == rotation_id:
            return item
    raise Missing("This rotation does not exist in this workspace.", code="rotation_not_found")

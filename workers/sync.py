"""Sync one PagerDuty connection: read PagerDuty, then write only what changed, in one transaction.

The algorithm, the write-minimisation rules, coalescing, fencing and the error table are written
down in docs/sync-and-disconnect.md. In short:

1. ``credential_for`` gives a usable credential and the connection's ``generation`` (the fence).
2. ``workers.pagerduty.snapshot.read_snapshot`` reads users, v2 + v3 schedules, their members
   and who is on call for the bound ones. Any account-wide failure raises: nothing has been
   written yet.
3. One transaction: the connection row is re-read ``FOR UPDATE``; if its generation moved or it
   is no longer ``connected`` the run is recorded as ``skipped`` and nothing else is written.
   Otherwise the snapshot is diffed against the mirror and the bound rotations, and only the
   differences are inserted, updated or deleted. The ``SyncRun`` row is written in the same
   transaction (or in its own one when the run failed).

One sync per connection runs at a time (a Redis lock); a request that finds the lock held sets a
"rerun" flag and returns: the holder runs one more pass so the request is never lost.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    Member,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Rotation,
    RotationMember,
    RotationMode,
    RotationOnDuty,
    SyncRun,
    normalize_email,
    utcnow,
)
from workers.core import locks, metrics
from workers.core.db import after_commit, transaction
from workers.core.ids import as_uuid
from workers.core.redis import client as redis_client
from workers.core.settings import get_settings
from workers.disconnect.sweeps import resend_stuck_disconnects
from workers.pagerduty.client import PagerDutyClient, shared_http_client
from workers.pagerduty.errors import (
    Forbidden,
    InvalidCredentials,
    NoApiAccess,
    PagerDutyError,
    PaginationLimit,
    RateLimited,
    Transient,
)
from workers.pagerduty.ratelimit import RateLimiter, RedisRateLimiter
from workers.pagerduty.snapshot import AccountSnapshot, read_snapshot
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import publish_many, publish_now
from workers.tokens import ConnectionCredential, ConnectionUnavailable, NeedsReauth, credential_for

log = logging.getLogger(__name__)

# Longer than the sync task's hard time limit (tasks/sync.py), so a live holder never loses it;
# a holder that was SIGKILLed blocks syncs of its connection for at most this long.
SYNC_LOCK_TTL_SECONDS = 200.0
RERUN_FLAG_TTL_SECONDS = 300.0
# A holder reruns at most this many passes for coalesced requests, then hands over to a task.
MAX_PASSES = 3
# A failing connection is re-synced by beat after interval * 2^failures, at most this long.
MAX_FAILURE_BACKOFF_SECONDS = 3600
# Fan-out: at most this many connections per beat round (the rest are still due next round).
FANOUT_BATCH = 20_000

INVALID_KEY_MESSAGE = (
    "PagerDuty rejected this API key (it was deleted, or belongs to a user who was removed). "
    "Connect again with a new read-only API key to resume syncing; rotations keep their last "
    "state until then."
)
OAUTH_REJECTED_MESSAGE = (
    "PagerDuty refused this connection's login even after refreshing it. Log in with OAuth 2.0 "
    "again to resume syncing; rotations keep their last state until then."
)
NO_API_ACCESS_MESSAGE = (
    "This PagerDuty account's plan does not include REST API access, so Round Robin cannot "
    "read its schedules. Rotations keep their last state."
)
FENCED_MESSAGE = (
    "The connection changed while this sync ran (disconnected, reconnected, its credential was "
    "replaced, or it needs attention); nothing was written."
)


# --- results ------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """What ``apply_snapshot`` wrote. ``warnings`` are plain words for admins."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    rotations_changed: int = 0
    unmatched_on_call: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@dataclass
class SyncResult:
    """The outcome of one sync call; ``as_dict`` is what the task returns (no secrets)."""

    status: str  # succeeded | failed | skipped | unavailable | coalesced
    connection_id: str
    sync_run_id: str | None = None
    created: int = 0
    updated: int = 0
    deleted: int = 0
    requests: int = 0
    passes: int = 0
    unmatched_on_call: int = 0
    error: str | None = None
    # Set when the task should retry: "rate_limited" or "transient".
    retry: str | None = None
    retry_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# --- the rate limiter shared through Redis -------------------------------------------------------

def shared_rate_limiter() -> RateLimiter:
    """Keyed per connection, shared by every worker through the process's Redis client."""
    settings = get_settings()
    return RedisRateLimiter(
        redis_client(),
        per_minute=settings.pagerduty_rate_limit_per_minute,
        key_prefix=settings.redis_key_prefix,
    )


def default_client(cred: ConnectionCredential) -> PagerDutyClient:
    return PagerDutyClient(
        cred.api_base_url,
        cred.credential,
        http=shared_http_client(),
        rate_limiter=shared_rate_limiter(),
        # PagerDuty limits per user/app, not per token: a refreshed token keeps its bucket.
        rate_limit_key=f"conn-{cred.connection_id}",
        timeout=get_settings().pagerduty_timeout_seconds,
    )


ClientFactory = Callable[[ConnectionCredential], PagerDutyClient]


# --- entry point: coalescing --------------------------------------------------------------------


def sync_connection(
    connection_id: uuid.UUID | str,
    *,
    kind: str = "scheduled",
    task_id: str | None = None,
    client_factory: ClientFactory | None = None,
    now: Callable[[], datetime] | None = None,
) -> SyncResult:
    """Sync one connection, coalescing with a sync of it that is already running anywhere.

    If another worker holds ``sync:<id>``, a rerun flag is set and ``coalesced`` returned: the
    holder clears the flag before each pass (its fetch then starts after the request) and runs
    another pass if the flag was set again meanwhile. See docs/sync-and-disconnect.md.
    """
    cid = as_uuid(connection_id)
    lock_name = f"sync:{cid}"
    flag_name = f"sync-rerun:{cid}"
    result: SyncResult | None = None
    passes = 0
    while True:
        with locks.try_lock(lock_name, SYNC_LOCK_TTL_SECONDS) as held:
            if not held:
                if result is not None:
                    # We already ran; the new holder took the lock after the pending request
                    # set its flag, so its own fetch covers that request.
                    return result
                locks.set_flag(flag_name, RERUN_FLAG_TTL_SECONDS)
                # Retry once: the holder may have released between our try and our flag.
                with locks.try_lock(lock_name, SYNC_LOCK_TTL_SECONDS) as held_now:
                    if not held_now:
                        metrics.incr("rrpd_syncs_total", outcome="coalesced")
                        return SyncResult(status="coalesced", connection_id=str(cid))
                    result, passes = _passes(cid, kind, task_id, client_factory, now, passes)
            else:
                result, passes = _passes(cid, kind, task_id, client_factory, now, passes)
        # Released. A request that arrived after our last flag check but before the release
        # found the lock held and left only the flag: pick it up rather than lose it.
        if not locks.flag_set(flag_name) or result.status in ("unavailable",) or result.retry:
            return result
        if passes >= MAX_PASSES:
            # Bounded work per task: hand the remaining request to a fresh task.
            locks.clear_flag(flag_name)
            publish_now(SYNC_CONNECTION, connection_id=str(cid), kind=kind)
            return result


def _passes(
    cid: uuid.UUID,
    kind: str,
    task_id: str | None,
    client_factory: ClientFactory | None,
    now: Callable[[], datetime] | None,
    passes: int,
) -> tuple[SyncResult, int]:
    """Run passes while holding the lock, one more each time the rerun flag was set."""
    flag_name = f"sync-rerun:{cid}"
    while True:
        # Cleared *before* the fetch: a request flagged from here on is covered by the next pass.
        locks.clear_flag(flag_name)
        result = sync_once(cid, kind=kind, task_id=task_id, client_factory=client_factory, now=now)
        passes += 1
        result.passes = passes
        if result.status == "unavailable" or result.retry or passes >= MAX_PASSES:
            return result, passes
        if not locks.flag_set(flag_name):
            return result, passes


# --- one pass -----------------------------------------------------------------------------------


def sync_once(
    connection_id: uuid.UUID | str,
    *,
    kind: str = "scheduled",
    task_id: str | None = None,
    client_factory: ClientFactory | None = None,
    now: Callable[[], datetime] | None = None,
) -> SyncResult:
    """One fetch-and-apply pass, without the coalescing lock (tests call this directly)."""
    cid = as_uuid(connection_id)
    clock = now or utcnow
    started_at = clock()
    t0 = time.monotonic()
    make_client = client_factory or default_client
    ctx = _RunContext(cid, kind, task_id, started_at, t0)
    try:
        try:
            cred = credential_for(cid)
        except ConnectionUnavailable as exc:
            # Disconnected, gone, or already waiting for a person (needs_reauth, invalid):
            # nothing to do and nothing worth recording on every beat round.
            return ctx.unavailable(exc.status)
        ctx.generation = cred.generation
        bound = bound_schedule_ids(cred.workspace_id)
        use_oncalls = _may_read_oncalls(cred)
        client = make_client(cred)
        ctx.clients.append(client)
        try:
            snapshot = read_snapshot(client, bound=bound, now=started_at, use_oncalls=use_oncalls)
        except InvalidCredentials:
            if cred.auth_method != AuthMethod.OAUTH.value:
                return ctx.failed(
                    INVALID_KEY_MESSAGE, transition=(ConnectionStatus.INVALID, INVALID_KEY_MESSAGE)
                )
            # OAuth: the token may have been revoked or rotated; refresh once and try again.
            try:
                cred = credential_for(cid, rejected=cred.credential)
            except NeedsReauth:
                # credential_for already moved the connection to needs_reauth, with its words.
                return ctx.failed(
                    OAUTH_REJECTED_MESSAGE, also_current=ConnectionStatus.NEEDS_REAUTH
                )
            if cred.generation != ctx.generation:
                return ctx.skipped()
            client = make_client(cred)
            ctx.clients.append(client)
            try:
                snapshot = read_snapshot(
                    client, bound=bound, now=started_at, use_oncalls=use_oncalls
                )
            except InvalidCredentials:
                return ctx.failed(
                    OAUTH_REJECTED_MESSAGE,
                    transition=(ConnectionStatus.NEEDS_REAUTH, OAUTH_REJECTED_MESSAGE),
                )
        return ctx.apply(snapshot, clock)
    except ConnectionUnavailable as exc:  # NeedsReauth too: the connection already says why
        return ctx.unavailable(exc.status)
    except RateLimited as exc:
        # Counted (with every 429 the client retried itself) when the run's metrics are written.
        wait = exc.reset_after
        return ctx.failed(
            "PagerDuty's rate limit for this account was reached; the sync will be retried "
            f"in about {round(wait) if wait is not None else 'a few'} seconds.",
            retry="rate_limited",
            retry_after=wait,
        )
    except Transient as exc:
        return ctx.failed(
            f"PagerDuty could not be read right now ({exc}); the sync will be retried.",
            retry="transient",
        )
    except NoApiAccess:
        return ctx.failed(
            NO_API_ACCESS_MESSAGE,
            transition=(ConnectionStatus.INVALID, NO_API_ACCESS_MESSAGE),
        )
    except Forbidden as exc:
        missing = ", ".join(exc.missing) if exc.missing else None
        message = (
            "PagerDuty refused to show users or schedules to this connection"
            + (f" (it lacks: {missing})" if missing else "")
            + ". Reconnect with a credential that can read users and schedules."
        )
        return ctx.failed(message)
    except PaginationLimit as exc:
        return ctx.failed(
            f"This PagerDuty account is too large for PagerDuty's API to list in full ({exc}); "
            "nothing was changed."
        )
    except PagerDutyError as exc:
        return ctx.failed(f"PagerDuty answered in a way we cannot use ({exc}); nothing changed.")
    except Exception as exc:
        # A bug, a database failure, a soft time limit: record it in plain words, then let the
        # task machinery see the exception.
        try:
            ctx.failed(f"The sync stopped on an internal error ({type(exc).__name__}).")
        except Exception:
            log.exception("could not record the failed sync run")
        raise


def bound_schedule_ids(workspace_id: uuid.UUID) -> set[str]:
    """The PagerDuty schedules the workspace's rotations are bound to (read before the fetch:
    only these need who is on call)."""
    with transaction() as session:
        return set(
            session.execute(
                select(Rotation.pagerduty_schedule_id).where(
                    Rotation.workspace_id == workspace_id,
                    Rotation.mode == RotationMode.PAGERDUTY.value,
                    Rotation.pagerduty_schedule_id.is_not(None),
                )
            ).scalars()
        )


def _may_read_oncalls(cred: ConnectionCredential) -> bool:
    """API keys may read /oncalls; an OAuth token only if it was granted ``oncalls.read``."""
    return cred.scopes is None or "oncalls.read" in cred.scopes


class _RunContext:
    """Bookkeeping for one pass: records the SyncRun and metrics however the pass ends."""

    def __init__(
        self, cid: uuid.UUID, kind: str, task_id: str | None, started_at: datetime, t0: float
    ) -> None:
        self.cid = cid
        self.kind = kind
        self.task_id = task_id
        self.started_at = started_at
        self.t0 = t0
        self.generation: int | None = None
        self.clients: list[PagerDutyClient] = []

    # -- helpers --

    def _requests(self) -> int:
        return sum(c.requests_made for c in self.clients)

    def _duration_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def _metrics(self, outcome: str, duration_ms: int) -> None:
        metrics.incr("rrpd_syncs_total", outcome=outcome)
        metrics.incr("rrpd_sync_duration_seconds_sum", duration_ms / 1000)
        metrics.incr("rrpd_sync_duration_seconds_count")
        for client in self.clients:
            for endpoint, count in client.requests_by_endpoint.items():
                metrics.incr("rrpd_pagerduty_requests_total", count, endpoint=endpoint)
            for endpoint, count in client.rate_limited_by_endpoint.items():
                metrics.incr("rrpd_pagerduty_rate_limited_total", count, endpoint=endpoint)

    def _run(self, status: str, generation: int, error: str | None, applied: ApplyResult | None):
        duration_ms = self._duration_ms()
        return SyncRun(
            id=uuid.uuid4(),
            connection_id=self.cid,
            generation=generation,
            kind=self.kind[:20],
            status=status,
            task_id=self.task_id,
            started_at=self.started_at,
            finished_at=utcnow(),
            duration_ms=duration_ms,
            rows_created=applied.created if applied else 0,
            rows_updated=applied.updated if applied else 0,
            rows_deleted=applied.deleted if applied else 0,
            requests_made=self._requests(),
            error=error,
        )

    # -- endings --

    def unavailable(self, status: str | None) -> SyncResult:
        self._metrics("unavailable", self._duration_ms())
        return SyncResult(
            status="unavailable",
            connection_id=str(self.cid),
            requests=self._requests(),
            error=f"connection is {status or 'missing'}",
        )

    def skipped(self) -> SyncResult:
        with transaction() as session:
            conn = session.get(PagerDutyConnection, self.cid)
            if conn is None:
                return self.unavailable(None)
            run = self._run("skipped", self.generation or conn.generation, FENCED_MESSAGE, None)
            session.add(run)
        self._metrics("skipped", run.duration_ms or 0)
        return SyncResult(
            status="skipped",
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            requests=run.requests_made,
            error=FENCED_MESSAGE,
        )

    def failed(
        self,
        message: str,
        *,
        transition: tuple[ConnectionStatus, str] | None = None,
        retry: str | None = None,
        retry_after: float | None = None,
        also_current: ConnectionStatus | None = None,
    ) -> SyncResult:
        """Record a failed run in its own transaction; touch the connection only if fenced-in.

        ``also_current``: a status this very pass moved the connection to (needs_reauth after a
        refused refresh), which still counts as "ours" rather than a concurrent change.
        """
        settings = get_settings()
        with transaction() as session:
            conn = session.execute(
                select(PagerDutyConnection)
                .where(PagerDutyConnection.id == self.cid)
                .with_for_update()
            ).scalar_one_or_none()
            if conn is None:
                return self.unavailable(None)
            generation = self.generation if self.generation is not None else conn.generation
            ours = {ConnectionStatus.CONNECTED.value}
            if also_current is not None:
                ours.add(also_current.value)
            fenced_in = conn.generation == generation and conn.status in ours
            status = "failed" if fenced_in else "skipped"
            run = self._run(status, generation, message if fenced_in else FENCED_MESSAGE, None)
            session.add(run)
            if fenced_in:
                conn.consecutive_sync_failures += 1
                backoff = min(
                    settings.sync_interval_seconds * 2 ** min(conn.consecutive_sync_failures, 10),
                    MAX_FAILURE_BACKOFF_SECONDS,
                )
                not_before = utcnow() + timedelta(seconds=backoff)
                if conn.next_sync_at is None or conn.next_sync_at < not_before:
                    conn.next_sync_at = not_before
                if transition is not None and conn.can_transition(transition[0]):
                    conn.transition(transition[0], error=transition[1])
        self._metrics(status, run.duration_ms or 0)
        log.info("sync %s: %s", status, message, extra={"connection_id": str(self.cid)})
        return SyncResult(
            status=status,
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            requests=run.requests_made,
            error=run.error,
            retry=retry if fenced_in else None,
            retry_after=retry_after,
        )

    def apply(self, snapshot: AccountSnapshot, clock: Callable[[], datetime]) -> SyncResult:
        with transaction() as session:
            conn = session.execute(
                select(PagerDutyConnection)
                .where(PagerDutyConnection.id == self.cid)
                .with_for_update()
            ).scalar_one_or_none()
            if conn is None:
                return self.unavailable(None)
            if (
                conn.generation != self.generation
                or conn.status != ConnectionStatus.CONNECTED.value
            ):
                run = self._run("skipped", self.generation or 0, FENCED_MESSAGE, None)
                session.add(run)
                applied = None
            else:
                applied = apply_snapshot(session, conn, snapshot, now=clock())
                # Connection bookkeeping only when it changes something (see the docs):
                # a quiet sync leaves the connection row alone.
                if conn.consecutive_sync_failures:
                    conn.consecutive_sync_failures = 0
                if applied.changed or conn.last_synced_at is None:
                    conn.last_synced_at = utcnow()
                run = self._run(
                    "succeeded",
                    conn.generation,
                    " ".join(applied.warnings) or None,
                    applied,
                )
                session.add(run)
        self._metrics(run.status, run.duration_ms or 0)
        return SyncResult(
            status=run.status,
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            created=run.rows_created,
            updated=run.rows_updated,
            deleted=run.rows_deleted,
            requests=run.requests_made,
            unmatched_on_call=applied.unmatched_on_call if applied else 0,
            error=run.error,
        )


# --- the diff -----------------------------------------------------------------------------------


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if isinstance(value, str) else None


def apply_snapshot(
    session: Session, conn: PagerDutyConnection, snapshot: AccountSnapshot, *, now: datetime
) -> ApplyResult:
    """Make the mirror and the workspace's bound rotations match ``snapshot``, writing only the
    differences. The caller holds the connection row lock and has checked the fence.

    What the snapshot could not read is left as it is: mirrored v3 schedules when PagerDuty
    refused to list them, members of schedules whose detail failed, on-call of bound schedules
    it could not read (their rotations keep their last state, with a warning).
    """
    out = ApplyResult(warnings=list(snapshot.notices))
    cid = conn.id
    members_by_key: dict[str, uuid.UUID] = {
        key: mid
        for key, mid in session.execute(
            select(Member.email_key, Member.id).where(Member.workspace_id == conn.workspace_id)
        ).all()
    }

    # -- users (inactive ones are deleted users that schedules still name: never linked) --
    want_users: dict[str, dict[str, Any]] = {}
    for user in snapshot.users:
        if not user.id or len(user.id) > 64:
            continue
        email = (user.email or "").strip()[:320] or None
        key = normalize_email(email) if email else None
        want_users[user.id] = {
            "name": _clip(user.name, 300) or "",
            "email": email,
            "email_key": key,
            "time_zone": _clip(user.time_zone, 64),
            "active": user.active,
            "member_id": members_by_key.get(key) if key and user.active else None,
        }
    have_users = {
        row.pagerduty_id: row
        for row in session.execute(
            select(
                PagerDutyUser.id,
                PagerDutyUser.pagerduty_id,
                PagerDutyUser.name,
                PagerDutyUser.email,
                PagerDutyUser.email_key,
                PagerDutyUser.time_zone,
                PagerDutyUser.active,
                PagerDutyUser.member_id,
            ).where(PagerDutyUser.connection_id == cid)
        )
    }
    user_fields = ("name", "email", "email_key", "time_zone", "active", "member_id")
    _sync_keyed(session, PagerDutyUser, cid, want_users, have_users, user_fields, now, out)

    # -- schedules (v3 ones PagerDuty would not list this time are kept) --
    schedules = {s.id: s for s in snapshot.schedules if s.id and len(s.id) <= 64}
    want_schedules = {
        sid: {
            "name": _clip(s.name, 300) or sid,
            "time_zone": _clip(s.time_zone, 64),
            "version": s.version,
        }
        for sid, s in schedules.items()
    }
    have_schedules = {
        row.pagerduty_id: row
        for row in session.execute(
            select(
                PagerDutySchedule.id,
                PagerDutySchedule.pagerduty_id,
                PagerDutySchedule.name,
                PagerDutySchedule.time_zone,
                PagerDutySchedule.version,
            ).where(PagerDutySchedule.connection_id == cid)
        )
    }
    kept = set(snapshot.members_unknown)
    if not snapshot.v3_listed:
        kept |= {pid for pid, row in have_schedules.items() if row.version == "v3"}
    for pid in kept - want_schedules.keys():
        if pid in have_schedules:
            row = have_schedules[pid]
            want_schedules[pid] = {"name": row.name, "time_zone": row.time_zone, "version": "v3"}
    _sync_keyed(
        session,
        PagerDutySchedule,
        cid,
        want_schedules,
        have_schedules,
        ("name", "time_zone", "version"),
        now,
        out,
    )

    # -- schedule members (position = PagerDuty's order) --
    have_members = {
        (r.schedule_pagerduty_id, r.user_pagerduty_id): r.position
        for r in session.execute(
            select(
                PagerDutyScheduleMember.schedule_pagerduty_id,
                PagerDutyScheduleMember.user_pagerduty_id,
                PagerDutyScheduleMember.position,
            ).where(PagerDutyScheduleMember.connection_id == cid)
        )
    }
    want_members: dict[tuple[str, str], int] = {
        key: pos for key, pos in have_members.items() if key[0] in kept
    }
    for sid, s in schedules.items():
        if sid in kept:
            continue
        for position, uid in enumerate(u for u in s.member_user_ids if u and len(u) <= 64):
            want_members.setdefault((sid, uid), position)
    sm = PagerDutyScheduleMember
    _sync_pairs(
        session,
        sm,
        (sm.schedule_pagerduty_id, sm.user_pagerduty_id),
        {"connection_id": cid},
        sm.connection_id == cid,
        {k: {"position": v} for k, v in want_members.items()},
        {k: {"position": v} for k, v in have_members.items()},
        ("schedule_pagerduty_id", "user_pagerduty_id"),
        out,
    )

    # -- who is on call now for bound schedules (kept when nobody in the workspace matches) --
    oc = PagerDutyOnCall
    have_oncall = {
        (r.schedule_pagerduty_id, r.user_pagerduty_id): {
            "starts_at": r.starts_at,
            "ends_at": r.ends_at,
        }
        for r in session.execute(
            select(oc.schedule_pagerduty_id, oc.user_pagerduty_id, oc.starts_at, oc.ends_at).where(
                oc.connection_id == cid
            )
        )
    }
    want_oncall = {k: v for k, v in have_oncall.items() if k[0] in snapshot.unreadable}
    for sid, timeline in snapshot.timelines.items():
        for shift in timeline.shifts:
            uid = shift.user.id
            if uid and len(uid) <= 64 and len(sid) <= 64 and shift.covers(snapshot.fetched_at):
                want_oncall.setdefault((sid, uid), {"starts_at": shift.start, "ends_at": shift.end})
    _sync_pairs(
        session,
        oc,
        (oc.schedule_pagerduty_id, oc.user_pagerduty_id),
        {"connection_id": cid},
        oc.connection_id == cid,
        want_oncall,
        have_oncall,
        ("schedule_pagerduty_id", "user_pagerduty_id"),
        out,
    )

    # -- bound rotations --
    member_of_user = {uid: u["member_id"] for uid, u in want_users.items() if u["member_id"]}
    out.unmatched_on_call = len({uid for (_sid, uid) in want_oncall if uid not in member_of_user})
    _sync_rotations(session, conn, snapshot, schedules, member_of_user, now, out)
    return out


def _sync_keyed(
    session: Session,
    model: Any,
    cid: uuid.UUID,
    want: dict[str, dict[str, Any]],
    have: dict[str, Any],
    fields: Iterable[str],
    now: datetime,
    out: ApplyResult,
) -> None:
    """Diff rows keyed by PagerDuty id (users, schedules); ``synced_at`` = last changed."""
    fields = tuple(fields)
    inserts = [
        {"id": uuid.uuid4(), "connection_id": cid, "pagerduty_id": pid, "synced_at": now, **vals}
        for pid, vals in want.items()
        if pid not in have
    ]
    updates = []
    for pid, vals in want.items():
        row = have.get(pid)
        if row is not None and any(getattr(row, f) != vals[f] for f in fields):
            updates.append({"id": row.id, "synced_at": now, **vals})
    gone = [row.id for pid, row in have.items() if pid not in want]
    if inserts:
        # render_nulls: a None (no member, no time zone) is sent as NULL instead of leaving the
        # column out, so every row has the same keys and goes in one batched INSERT. Without it
        # the ORM starts a new statement wherever the None pattern changes: 4,000 INSERTs for
        # 10,000 users of whom 80 % match (bench/bench_sync_large.py).
        session.execute(insert(model).execution_options(render_nulls=True), inserts)
    if updates:
        session.execute(update(model), updates)
    if gone:
        session.execute(delete(model).where(model.id.in_(gone)))
    out.created += len(inserts)
    out.updated += len(updates)
    out.deleted += len(gone)


def _sync_pairs(
    session: Session,
    model: Any,
    key_columns: tuple[Any, Any],
    fixed: dict[str, Any],
    scope: Any,
    want: dict[tuple[Any, Any], dict[str, Any]],
    have: dict[tuple[Any, Any], dict[str, Any]],
    key_names: tuple[str, str],
    out: ApplyResult,
) -> None:
    """Diff rows keyed by a pair (within ``scope``); values in ``want`` are compared as dicts."""
    a, b = key_names
    inserts = [{**fixed, a: k[0], b: k[1], **v} for k, v in want.items() if k not in have]
    changed = [k for k, v in want.items() if k in have and have[k] != v]
    gone = [k for k in have if k not in want]
    if inserts:
        session.execute(insert(model), inserts)
    for k in changed:
        session.execute(
            update(model)
            .where(scope, key_columns[0] == k[0], key_columns[1] == k[1])
            .values(**want[k])
            .execution_options(synchronize_session=False)
        )
    if gone:
        session.execute(
            delete(model)
            .where(scope, tuple_(*key_columns).in_(gone))
            .execution_options(synchronize_session=False)
        )
    out.created += len(inserts)
    out.updated += len(changed)
    out.deleted += len(gone)


def _sync_rotations(
    session: Session,
    conn: PagerDutyConnection,
    snapshot: AccountSnapshot,
    schedules: dict[str, Any],
    member_of_user: dict[str, uuid.UUID],
    now: datetime,
    out: ApplyResult,
) -> None:
    # Lock order everywhere: connection row, then rotation rows (disconnect does the same).
    bound = session.execute(
        select(Rotation.id, Rotation.name, Rotation.pagerduty_schedule_id, Rotation.last_synced_at)
        .where(
            Rotation.workspace_id == conn.workspace_id,
            Rotation.mode == RotationMode.PAGERDUTY.value,
        )
        .order_by(Rotation.id)
        .with_for_update()
    ).all()
    if not bound:
        return
    ids = [r.id for r in bound]
    have_members: dict[uuid.UUID, dict[uuid.UUID, int]] = {i: {} for i in ids}
    for rid, mid, pos in session.execute(
        select(RotationMember.rotation_id, RotationMember.member_id, RotationMember.position).where(
            RotationMember.rotation_id.in_(ids)
        )
    ):
        have_members[rid][mid] = pos
    have_duty: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in ids}
    for rid, mid in session.execute(
        select(RotationOnDuty.rotation_id, RotationOnDuty.member_id).where(
            RotationOnDuty.rotation_id.in_(ids)
        )
    ):
        have_duty[rid].add(mid)

    member_inserts: list[dict[str, Any]] = []
    member_updates: list[tuple[uuid.UUID, uuid.UUID, int]] = []
    member_deletes: list[tuple[uuid.UUID, uuid.UUID]] = []
    duty_inserts: list[dict[str, Any]] = []
    duty_deletes: list[tuple[uuid.UUID, uuid.UUID]] = []
    touched: list[uuid.UUID] = []
    for rot in bound:
        sid = rot.pagerduty_schedule_id
        schedule = schedules.get(sid)
        if schedule is None or sid in snapshot.unreadable or sid not in snapshot.timelines:
            # Keep the rotation's last state; say so rather than unbind silently.
            why = snapshot.unreadable.get(sid) or (
                "PagerDuty no longer lists it (deleted, or not visible to this connection)"
                if schedule is None
                else "its on-call could not be read"
            )
            out.warnings.append(
                f"Rotation {rot.name!r} is bound to PagerDuty schedule {sid}: {why}. It keeps "
                "its last members and on-duty people until it is bound to another schedule or "
                "made Manual."
            )
            continue
        want_members: dict[uuid.UUID, int] = {}
        for uid in schedule.member_user_ids:
            mid = member_of_user.get(uid)
            if mid is not None and mid not in want_members:
                want_members[mid] = len(want_members)
        want_duty = {member_of_user[u.id] for u in snapshot.on_call(sid) if u.id in member_of_user}
        have_m = have_members[rot.id]
        before = len(member_inserts) + len(member_updates) + len(member_deletes)
        before += len(duty_inserts) + len(duty_deletes)
        for mid, pos in want_members.items():
            if mid not in have_m:
                member_inserts.append({"rotation_id": rot.id, "member_id": mid, "position": pos})
            elif have_m[mid] != pos:
                member_updates.append((rot.id, mid, pos))
        member_deletes += [(rot.id, mid) for mid in have_m if mid not in want_members]
        duty_inserts += [
            {"rotation_id": rot.id, "member_id": mid, "since": now}
            for mid in want_duty - have_duty[rot.id]
        ]
        duty_deletes += [(rot.id, mid) for mid in have_duty[rot.id] - want_duty]
        after = len(member_inserts) + len(member_updates) + len(member_deletes)
        after += len(duty_inserts) + len(duty_deletes)
        if after != before or rot.last_synced_at is None:
            touched.append(rot.id)

    # Deletes first: a position freed by a leaver may be taken by a newcomer.
    if member_deletes:
        session.execute(
            delete(RotationMember)
            .where(tuple_(RotationMember.rotation_id, RotationMember.member_id).in_(member_deletes))
            .execution_options(synchronize_session=False)
        )
    for rid, mid, pos in member_updates:
        session.execute(
            update(RotationMember)
            .where(RotationMember.rotation_id == rid, RotationMember.member_id == mid)
            .values(position=pos)
            .execution_options(synchronize_session=False)
        )
    if member_inserts:
        session.execute(insert(RotationMember), member_inserts)
    if duty_deletes:
        session.execute(
            delete(RotationOnDuty)
            .where(tuple_(RotationOnDuty.rotation_id, RotationOnDuty.member_id).in_(duty_deletes))
            .execution_options(synchronize_session=False)
        )
    if duty_inserts:
        session.execute(insert(RotationOnDuty), duty_inserts)
    if touched:
        # "Last changed by a sync" (and first sync after binding): a quiet sync writes nothing.
        session.execute(
            update(Rotation)
            .where(Rotation.id.in_(touched))
            .values(last_synced_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    out.created += len(member_inserts) + len(duty_inserts)
    out.updated += len(member_updates) + len(touched)
    out.deleted += len(member_deletes) + len(duty_deletes)
    out.rotations_changed = len(touched)


# --- beat fan-out -------------------------------------------------------------------------------


def schedule_syncs(
    now: datetime | None = None,
    *,
    rng: random.Random | None = None,
    batch: int = FANOUT_BATCH,
) -> dict[str, int]:
    """Enqueue a sync for every connected connection that is due, spread over the jitter window.

    ``next_sync_at`` is pushed to now + interval in the same statement that picks the rows
    (``FOR UPDATE SKIP LOCKED``), so two beat processes, or a round slower than the interval,
    never enqueue a connection twice. Also re-enqueues disconnects whose task was lost.
    """
    settings = get_settings()
    now = now or utcnow()
    rng = rng or random.Random()
    jitter = max(0.0, float(settings.sync_jitter_seconds))
    due = (PagerDutyConnection.status == ConnectionStatus.CONNECTED.value) & or_(
        PagerDutyConnection.next_sync_at.is_(None), PagerDutyConnection.next_sync_at <= now
    )
    pick = (
        select(PagerDutyConnection.id)
        .where(due)
        .order_by(PagerDutyConnection.next_sync_at.asc().nulls_first())
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with transaction() as session:
        ids = list(
            session.execute(
                update(PagerDutyConnection)
                .where(PagerDutyConnection.id.in_(pick), due)
                .values(next_sync_at=now + timedelta(seconds=settings.sync_interval_seconds))
                .returning(PagerDutyConnection.id)
                .execution_options(synchronize_session=False)
            ).scalars()
        )
        batch_messages = [
            ({"connection_id": str(cid), "kind": "scheduled"}, rng.uniform(0, jitter) or None)
            for cid in ids
        ]
        # Published after commit (never for rows that rolled back), through one producer:
        # thousands of separate send_task calls each take a pooled connection and cost seconds.
        after_commit(session, lambda: publish_many(SYNC_CONNECTION, batch_messages))
        # Not a sync, but the same beat round: lost disconnects are sent again.
        disconnects = resend_stuck_disconnects(session, now)
    return {"enqueued": len(ids), "disconnects": disconnects}

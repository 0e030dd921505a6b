"""One sync of one connection: read PagerDuty, then write only what changed, in one transaction.

1. ``credential_for`` gives a usable credential and the connection's ``generation`` (the fence).
2. Which read (``read_plan``): the **directory read** (``read_snapshot``: v2 + v3 schedules,
   their members, who is on call for the bound ones; the user listing only when ``users_due``,
   daily, else people met for the first time by id) when the connection's directory is older
   than ``RRPD_DIRECTORY_INTERVAL_SECONDS`` or the sync was asked for (``manual``, ``initial``,
   ``binding``); otherwise the **on-call check** (``read_check``: ``/oncalls`` for the bound
   schedules the mirror knows), which turns into a directory read in the same pass when it meets
   a person or a schedule the mirror does not know (``needs_directory``). Any account-wide
   failure raises: nothing has been written yet.
3. ``RunContext.apply`` (``workers.sync.records``): one transaction re-reads the connection row
   ``FOR UPDATE``; if its generation moved or it is no longer ``connected`` the run is recorded
   as ``skipped``, otherwise ``workers.sync.apply`` writes the differences and the ``SyncRun``.

``sync_connection`` wraps passes in the coalescing lock (``workers.sync.coalescing``);
``sync_once`` is one pass without it. docs/sync-and-disconnect.md has the whole algorithm.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, select, update
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    utcnow,
)
from workers.connections.tokens import (
    ConnectionCredential,
    ConnectionUnavailable,
    NeedsReauth,
    credential_for,
)
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.handoffs.bound import bound_schedule_pairs, schedule_column
from workers.handoffs.plan import read_stored_on_call
from workers.pagerduty.errors import (
    InvalidCredentials,
)
from workers.pagerduty.factory import pagerduty_client
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Schedule, UserRef
from workers.pagerduty.snapshot import (
    AccountSnapshot,
    read_check,
    read_snapshot,
    referenced_users,
)
from workers.pagerduty.window import StoredOnCall
from workers.sync import messages, oncall_rows
from workers.sync.coalescing import coalesce
from workers.sync.endings import record_failure
from workers.sync.kinds import DIRECTORY_KINDS, SyncKind
from workers.sync.records import RunContext, SyncResult
from workers.sync.upcoming import UPCOMING_HORIZON, upcoming_due
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import publish_now

log = logging.getLogger(__name__)


def default_client(cred: ConnectionCredential) -> PagerDutyReader:
    # PagerDuty limits per user/app, not per token: a refreshed token keeps its bucket.
    return pagerduty_client(
        cred.api_base_url, cred.credential, rate_limit_key=f"conn-{cred.connection_id}"
    )


ClientFactory = Callable[[ConnectionCredential], PagerDutyReader]


def sync_connection(
    connection_id: uuid.UUID | str,
    *,
    kind: str = SyncKind.SCHEDULED,
    task_id: str | None = None,
    client_factory: ClientFactory | None = None,
    now: Callable[[], datetime] | None = None,
) -> SyncResult:
    """Sync one connection, coalescing with a sync of it that is already running anywhere
    (``workers.sync.coalescing``)."""
    cid = as_uuid(connection_id)
    return coalesce(
        cid,
        lambda: sync_once(cid, kind=kind, task_id=task_id, client_factory=client_factory, now=now),
        lambda: publish_now(SYNC_CONNECTION, connection_id=str(cid), kind=kind),
        kind=kind,
        task_id=task_id,
    )


def sync_once(
    connection_id: uuid.UUID | str,
    *,
    kind: str = SyncKind.SCHEDULED,
    task_id: str | None = None,
    client_factory: ClientFactory | None = None,
    now: Callable[[], datetime] | None = None,
) -> SyncResult:
    """One pass, without the coalescing lock (tests and the batch call this directly):
    plan -> read -> apply -> record."""
    cid = as_uuid(connection_id)
    kind = SyncKind(kind)  # an unknown kind fails here, before any read (the tasks check it too)
    clock = now or utcnow
    started_at = clock()
    ctx = RunContext(cid, kind, task_id, started_at, time.monotonic())
    try:
        try:
            cred = credential_for(cid)
        except ConnectionUnavailable as exc:
            # Disconnected, gone, or already waiting for a person (needs_reauth, invalid):
            # nothing to do and nothing worth recording on every beat round.
            return ctx.unavailable(exc.status)
        ctx.generation = cred.generation
        plan = read_plan(cid, cred.workspace_id, kind, started_at)
        read = read_with_refresh(ctx, cred, plan, client_factory or default_client)
        if isinstance(read, SyncResult):
            return read
        return ctx.apply(read, clock)
    except Exception as exc:
        return record_failure(ctx, exc)


def read_with_refresh(
    ctx: RunContext, cred: ConnectionCredential, plan: ReadPlan, make_client: ClientFactory
) -> AccountSnapshot | SyncResult:
    """The read, with one OAuth refresh when PagerDuty refuses the token; a ``SyncResult`` when
    the pass ends here (the credential is refused for good, or the connection changed)."""
    use_oncalls = may_read_oncalls(cred)
    client = make_client(cred)
    ctx.clients.append(client)
    try:
        return read_account(ctx.cid, client, plan, ctx.started_at, use_oncalls)
    except InvalidCredentials:
        if cred.auth_method != AuthMethod.OAUTH:
            return ctx.failed(messages.INVALID_KEY, moves_to=ConnectionStatus.INVALID)
    # OAuth: the token may have been revoked or rotated; refresh once and try again.
    try:
        cred = credential_for(ctx.cid, rejected=cred.credential)
    except NeedsReauth:
        # credential_for already moved the connection to needs_reauth, with its words.
        return ctx.failed(messages.OAUTH_REJECTED, also_current=ConnectionStatus.NEEDS_REAUTH)
    if cred.generation != ctx.generation:
        return ctx.skipped()
    client = make_client(cred)
    ctx.clients.append(client)
    try:
        return read_account(ctx.cid, client, plan, ctx.started_at, use_oncalls)
    except InvalidCredentials:
        return ctx.failed(messages.OAUTH_REJECTED, moves_to=ConnectionStatus.NEEDS_REAUTH)


# A pass that started answering a "sync now" ends within the task's hard time limit.
SYNC_RUNNING_SECONDS = SYNC_CONNECTION.time_limit + 5.0


@dataclass(frozen=True)
class ReadPlan:
    bound: set[str]
    v3_bound: set[str]  # bound schedules the mirror knows as v3
    directory: bool  # read the directory (schedule lists, members) this pass
    # The mirror's members of the bound schedules (PagerDuty id -> active), read with the plan
    # for a check: ``needs_directory`` looks up only the people it names beyond these.
    known_users: dict[str, bool] = field(default_factory=dict)
    # The bound schedules as the mirror has them (version, members): what a check asks about.
    known: tuple[Schedule, ...] = ()
    # A directory read lists the user directory too (daily and on demand, ``users_due``).
    users: bool = True
    # A directory read is the upcoming read too: 7 days of on-call (workers.sync.upcoming).
    upcoming: bool = False


def read_plan(cid: uuid.UUID, workspace_id: uuid.UUID, kind: str, now: datetime) -> ReadPlan:
    """Which read this pass makes, from the connection's ``directory_read_at`` (a column, so the
    decision survives restarts and is per connection) and the sync's ``kind``.

    One transaction: the directory's age, the bound schedules with the version the mirror
    knows them as (an outer join on the unique (connection, PagerDuty id)) and, for a check,
    the mirrored users who are members of those schedules (whom a quiet check names).
    """
    interval = timedelta(seconds=get_settings().directory_interval_seconds)
    with transaction() as session:
        read_at, users_at, upcoming_at = _directory_ages(session, cid, now)
        bound, v3_bound, names = _bound_versions(session, cid, workspace_id)
        due = kind in DIRECTORY_KINDS or read_at is None or now - read_at >= interval
        known: dict[str, bool] = {}
        members: dict[str, list[UserRef]] = {sid: [] for sid in names}
        if names and not due:
            known = _mirrored_members(session, cid, members)
    mirrored = tuple(
        Schedule(sid, name, "v3" if sid in v3_bound else "v2", tz, tuple(members[sid]))
        for sid, (name, tz) in sorted(names.items())
    )
    return ReadPlan(
        bound,
        v3_bound,
        due,
        known,
        mirrored,
        users_due(kind, users_at, now),
        upcoming_due(kind, upcoming_at, now),
    )


def _directory_ages(
    session: Session, cid: uuid.UUID, now: datetime
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """When the connection's directory, its user directory and its next 7 days were last read;
    a pending "sync now" this pass answers is held from the deadlines loop while the pass may
    still run."""
    c = PagerDutyConnection
    read_at, requested_at, users_at, upcoming_at = session.execute(
        select(c.directory_read_at, c.sync_requested_at, c.users_read_at, c.upcoming_read_at).where(
            c.id == cid
        )
    ).one_or_none() or (None, None, None, None)
    if requested_at is not None and requested_at <= now:
        # This pass answers a pending "sync now": not driven again while it may still run.
        session.execute(
            update(c)
            .where(c.id == cid, c.sync_requested_at == requested_at)
            .values(drive_at=now + timedelta(seconds=SYNC_RUNNING_SECONDS))
            .execution_options(synchronize_session=False)
        )
    return read_at, users_at, upcoming_at


def _bound_versions(
    session: Session, cid: uuid.UUID, workspace_id: uuid.UUID
) -> tuple[set[str], set[str], dict[str, tuple[str, str | None]]]:
    """The workspace's bound schedules, those the mirror knows as v3, and the name and time
    zone of each the mirror has (a bound schedule it lacks is in the first set only)."""
    s = PagerDutySchedule
    bound: set[str] = set()
    v3_bound: set[str] = set()
    names: dict[str, tuple[str, str | None]] = {}
    for schedule_id, version, name, time_zone in session.execute(
        bound_schedules(workspace_id)
        .add_columns(s.version, s.name, s.time_zone)
        .outerjoin(s, and_(s.connection_id == cid, s.pagerduty_id == schedule_column()))
    ):
        if schedule_id is None:
            continue
        bound.add(schedule_id)
        if version == "v3":
            v3_bound.add(schedule_id)
        if version is not None:
            names[schedule_id] = (name, time_zone)
    return bound, v3_bound, names


def users_due(kind: str, users_read_at: datetime | None, now: datetime) -> bool:
    """The user directory (``GET /users`` pages) is listed daily
    (``RRPD_USER_DIRECTORY_INTERVAL_SECONDS``) and on demand; in between a directory read
    reads only the people it meets for the first time (``GET /users/{id}``)."""
    interval = timedelta(seconds=get_settings().user_directory_interval_seconds)
    return kind in DIRECTORY_KINDS or users_read_at is None or now - users_read_at >= interval


def _mirrored_members(
    session: Session, cid: uuid.UUID, members: dict[str, list[UserRef]]
) -> dict[str, bool]:
    """Fill ``members`` (schedule -> its mirrored members, PagerDuty's order) for the bound
    schedules it names; returns those users (PagerDuty id -> active)."""
    sm = PagerDutyScheduleMember
    rows = session.execute(
        select(sm.schedule_pagerduty_id, PagerDutyUser.pagerduty_id, PagerDutyUser.active)
        .join(
            sm,
            and_(sm.connection_id == cid, sm.user_pagerduty_id == PagerDutyUser.pagerduty_id),
        )
        .where(PagerDutyUser.connection_id == cid, sm.schedule_pagerduty_id.in_(members))
        .order_by(sm.schedule_pagerduty_id, sm.position)
    )
    known: dict[str, bool] = {}
    for sid, uid, active in rows:
        members[sid].append(UserRef(uid))
        known[str(uid)] = bool(active)
    return known


def read_account(
    cid: uuid.UUID,
    reader: PagerDutyReader,
    plan: ReadPlan,
    now: datetime,
    use_oncalls: bool,
) -> AccountSnapshot:
    """The check when it suffices, else the directory read (module globals: tests hook them)."""
    if plan.directory:
        return read_directory(cid, reader, plan, now, use_oncalls)
    check = read_plain_check(cid, reader, plan, now, use_oncalls)
    return complete_check(cid, reader, plan, check, now, use_oncalls)


def read_plain_check(
    cid: uuid.UUID,
    reader: PagerDutyReader,
    plan: ReadPlan,
    now: datetime,
    use_oncalls: bool,
    stored: StoredOnCall | None = None,
) -> AccountSnapshot:
    """The on-call check alone (the batch's read stage: a thin call into snapshot.py).
    ``stored``: who the stored timeline has on call (read here when not given; a batch gives
    what it read for all its connections at once)."""
    return oncall_rows.packed(
        cid,
        lambda hint: read_check(
            reader,
            known=plan.known,
            now=now,
            use_oncalls=use_oncalls,
            stored=stored or (lambda ids, at: read_stored_on_call(cid, ids, at)),
            rows_hint=hint,
        ),
    )


def complete_check(
    cid: uuid.UUID,
    reader: PagerDutyReader,
    plan: ReadPlan,
    check: AccountSnapshot,
    now: datetime,
    use_oncalls: bool,
) -> AccountSnapshot:
    """The check, or the directory read when the check met someone or something new."""
    if not needs_directory(cid, plan.bound, check, plan.known_users):
        return check
    log.info("the on-call check met someone or something new: reading the directory")
    return read_directory(cid, reader, plan, now, use_oncalls)


def read_directory(
    cid: uuid.UUID, reader: PagerDutyReader, plan: ReadPlan, now: datetime, use_oncalls: bool
) -> AccountSnapshot:
    """The directory read (the user directory too when ``plan.users``; each bound schedule's
    next 7 days when ``plan.upcoming``)."""
    return read_snapshot(
        reader,
        bound=plan.bound,
        now=now,
        use_oncalls=use_oncalls,
        read_users=plan.users,
        known_users=lambda ids: mirrored_users(cid, ids),
        upcoming=UPCOMING_HORIZON if plan.upcoming else None,
    )


def needs_directory(
    cid: uuid.UUID,
    bound: set[str],
    check: AccountSnapshot,
    known_users: Mapping[str, bool] | None = None,
) -> bool:
    """A check cannot be applied on its own when a bound schedule is missing from what it read
    (gone, or now another version), or it names a person the mirror does not have (new) or
    still has as active (deleted in PagerDuty since): only the directory has their details.

    ``known_users``: mirrored users already read (``ReadPlan.known_users``); only the people
    the check names beyond them are looked up (none on a quiet check: no transaction)."""
    if bound - {s.id for s in check.schedules}:
        return True
    refs = referenced_users(check)
    if not refs:
        return False
    known = dict(known_users or {})
    missing = [uid for uid in refs if uid not in known]
    if missing:
        known.update(mirrored_users(cid, missing))
    return any(uid not in known or (ref.deleted and known[uid]) for uid, ref in refs.items())


def mirrored_users(cid: uuid.UUID, ids: Collection[str]) -> dict[str, bool]:
    """Which of these PagerDuty users the mirror has (PagerDuty id -> active)."""
    with transaction() as session:
        return {
            str(uid): bool(active)
            for uid, active in session.execute(
                select(PagerDutyUser.pagerduty_id, PagerDutyUser.active).where(
                    PagerDutyUser.connection_id == cid,
                    PagerDutyUser.pagerduty_id.in_(list(ids)),
                )
            )
        }


def bound_schedules(workspace_id: uuid.UUID) -> Select[Any]:
    """The PagerDuty schedules the workspace's rotations follow, each of a rotation's 1 to 10
    (read before the fetch: only these need who is on call)."""
    return bound_schedule_pairs(workspace_id).with_only_columns(schedule_column()).order_by(None)


def may_read_oncalls(cred: ConnectionCredential) -> bool:
    """API keys may read /oncalls; an OAuth token only if it was granted ``oncalls.read``."""
    return cred.scopes is None or "oncalls.read" in cred.scopes

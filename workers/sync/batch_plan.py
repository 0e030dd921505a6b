"""The batch's plan stage: what each connection of a batch reads, from five statements.

One statement reads the connections (with their secrets' ciphertext), one their workspaces'
bound rotations with the schedules as the mirror has them, one the mirrored members of those
schedules (who they are in the workspace), two who the stored timeline has on call now (the
on-call mirror and the handoffs: what the check compares PagerDuty's "now", or a whole window,
with). Each connection then takes one route:

* ``CHECK``: the on-call check, read in the batch and decided in memory (``workers.sync.batch``);
* ``SINGLE``: the single pass (``workers.sync.run.sync_once``), when it has more to do than a
  check: the directory is due, a "sync now" is pending, or its OAuth token needs a refresh;
* ``UNAVAILABLE``: not connected (any more), nothing to read.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from sqlalchemy import Text, and_, or_, select, tuple_, type_coerce
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Rotation,
    RotationMode,
    RotationSchedule,
    ScheduledHandoff,
)
from workers.connections.tokens import ConnectionCredential
from workers.core import crypto
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.handoffs.bound import schedule_column
from workers.handoffs.on_call import Span
from workers.handoffs.plan import PendingRow, read_stored_on_call
from workers.pagerduty.parsing import whole_second
from workers.pagerduty.records import Credential, Schedule, UserRef
from workers.sync.kinds import SyncKind
from workers.sync.run import ReadPlan, users_due


class Route(StrEnum):
    CHECK = "check"
    SINGLE = "single"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class BoundRotation:
    """One schedule a bound rotation follows (a rotation following several has one each)."""

    rotation_id: uuid.UUID
    schedule_id: str | None
    never_synced: bool


@dataclass(frozen=True)
class KnownUser:
    """A mirrored PagerDuty user a bound schedule names."""

    active: bool
    member_id: uuid.UUID | None


@dataclass
class CheckPlan:
    cid: uuid.UUID
    route: Route
    status: str | None = None
    cred: ConnectionCredential | None = None
    rotations: list[BoundRotation] = field(default_factory=list)
    users: dict[str, KnownUser] = field(default_factory=dict)
    v3_bound: set[str] = field(default_factory=set)  # bound schedules the mirror knows as v3
    # The bound schedules the mirror has: name and time zone, members in PagerDuty's order.
    names: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    members: dict[str, list[UserRef]] = field(default_factory=dict)
    users_due: bool = False  # a directory read this pass would list the users too
    # Who the stored timeline has on call at ``stored_at`` (mirror, or a due handoff), per bound
    # schedule: what the check compares PagerDuty's "now" with (workers.pagerduty.window).
    stored_at: datetime | None = None
    stored: dict[str, frozenset[str]] = field(default_factory=dict)
    # The same statements' detail, for a schedule read over its whole window (its detail:
    # /oncalls does not show it), compared in memory (workers.sync.batch_confirm): the
    # mirror's rows with their shifts, and every bound rotation's handoff rows.
    spans: dict[str, dict[str, Span]] = field(default_factory=dict)
    handoffs: dict[uuid.UUID, list[PendingRow]] = field(default_factory=dict)

    def stored_on_call(
        self, schedule_ids: Collection[str], at: datetime
    ) -> Mapping[str, frozenset[str]]:
        """The check's ``stored`` callback: what the plan read for the batch (its own
        transaction only for another instant, which a check of this plan does not ask)."""
        if at != self.stored_at:
            return read_stored_on_call(self.cid, schedule_ids, at)
        return {sid: self.stored.get(sid, frozenset()) for sid in schedule_ids}

    @cached_property
    def read(self) -> ReadPlan:
        """The single pass's plan for the same check (its stages take it)."""
        bound = {r.schedule_id for r in self.rotations if r.schedule_id}
        known = {uid: u.active for uid, u in self.users.items()}
        mirrored = tuple(
            Schedule(
                sid, name, "v3" if sid in self.v3_bound else "v2", tz, tuple(self.members[sid])
            )
            for sid, (name, tz) in sorted(self.names.items())
        )
        return ReadPlan(bound, self.v3_bound, False, known, mirrored, self.users_due)


def plan_batch(ids: Sequence[uuid.UUID], now: datetime) -> list[CheckPlan]:
    """Each connection's route and, for a check, what it needs, in five statements."""
    with transaction() as session:
        plans = [_route(row, now) for row in _connections(session, ids)]
        checks = {p.cid: p for p in plans if p.route is Route.CHECK}
        if checks:
            _add_rotations(session, checks)
            _add_users(session, checks)
            _add_stored(session, checks, whole_second(now))
    return plans


def _connections(session: Session, ids: Sequence[uuid.UUID]) -> Any:
    c = PagerDutyConnection
    return session.execute(
        select(
            c.id,
            c.workspace_id,
            c.status,
            c.generation,
            c.auth_method,
            c.region,
            c.access_token_expires_at,
            c.granted_scopes,
            c.directory_read_at,
            c.sync_requested_at,
            c.users_read_at,
            type_coerce(c.api_key, Text).label("raw_api_key"),
            type_coerce(c.access_token, Text).label("raw_access_token"),
        ).where(c.id.in_(list(ids)))
    ).all()


def _route(row: Any, now: datetime) -> CheckPlan:
    settings = get_settings()
    if row.status == ConnectionStatus.VALIDATING:
        return CheckPlan(row.id, Route.SINGLE, row.status)  # the single pass handles it as today
    raw = row.raw_api_key if row.auth_method == AuthMethod.API_KEY else row.raw_access_token
    if row.status != ConnectionStatus.CONNECTED or raw is None:
        return CheckPlan(row.id, Route.UNAVAILABLE, row.status)
    directory_due = row.directory_read_at is None or now - row.directory_read_at >= timedelta(
        seconds=settings.directory_interval_seconds
    )
    requested = row.sync_requested_at is not None and row.sync_requested_at <= now
    refresh = row.auth_method == AuthMethod.OAUTH and (
        row.access_token_expires_at is None
        or row.access_token_expires_at
        <= now + timedelta(seconds=settings.token_refresh_margin_seconds)
    )
    if directory_due or requested or refresh:
        return CheckPlan(row.id, Route.SINGLE, row.status)
    oauth = row.auth_method == AuthMethod.OAUTH
    cred = ConnectionCredential(
        connection_id=row.id,
        workspace_id=row.workspace_id,
        generation=row.generation,
        auth_method=row.auth_method,
        api_base_url=settings.api_base_url(row.region),
        credential=Credential(kind="oauth" if oauth else "api_key", secret=crypto.decrypt(raw)),
        expires_at=row.access_token_expires_at,
        scopes=frozenset((row.granted_scopes or "").split()) if oauth else None,
    )
    plan = CheckPlan(row.id, Route.CHECK, row.status, cred)
    plan.users_due = users_due(SyncKind.SCHEDULED, row.users_read_at, now)
    return plan


def _add_rotations(session: Session, checks: dict[uuid.UUID, CheckPlan]) -> None:
    """Every connection's bound rotations (as apply locks them: pagerduty mode, bound to a
    schedule or not yet), with the version the mirror knows the schedule as."""
    c, s, r = PagerDutyConnection, PagerDutySchedule, Rotation
    # One row per schedule a rotation follows (workers.handoffs.bound: 1 to 10 each).
    sid_col = schedule_column()
    rows = session.execute(
        select(c.id, r.id, sid_col, r.last_synced_at, s.version, s.name)
        .add_columns(s.time_zone)
        .join(Rotation, Rotation.workspace_id == c.workspace_id)
        .outerjoin(RotationSchedule, RotationSchedule.rotation_id == Rotation.id)
        .outerjoin(s, and_(s.connection_id == c.id, s.pagerduty_id == sid_col))
        .where(c.id.in_(list(checks)), Rotation.mode == RotationMode.PAGERDUTY)
    )
    for cid, rid, sid, synced_at, version, name, time_zone in rows:
        plan = checks[cid]
        plan.rotations.append(BoundRotation(rid, sid, synced_at is None))
        if sid is not None and version is not None:
            plan.names[sid] = (name, time_zone)
            plan.members[sid] = []
            if version == "v3":
                plan.v3_bound.add(sid)


def _add_users(session: Session, checks: dict[uuid.UUID, CheckPlan]) -> None:
    """The mirrored members of every connection's bound schedules, in PagerDuty's order (what
    the check asks about), with whether they are active and which workspace member they are."""
    u, sm = PagerDutyUser, PagerDutyScheduleMember
    sids = {sid for p in checks.values() for sid in p.names}
    if not sids:
        return
    rows = session.execute(
        select(u.connection_id, sm.schedule_pagerduty_id, u.pagerduty_id, u.active, u.member_id)
        .join(
            sm,
            and_(sm.connection_id == u.connection_id, sm.user_pagerduty_id == u.pagerduty_id),
        )
        .where(u.connection_id.in_(list(checks)), sm.schedule_pagerduty_id.in_(sorted(sids)))
        .order_by(u.connection_id, sm.schedule_pagerduty_id, sm.position)
    )
    for cid, sid, uid, active, member_id in rows:
        plan = checks[cid]
        if sid in plan.members:
            plan.members[sid].append(UserRef(uid))
            plan.users[str(uid)] = KnownUser(bool(active), member_id)


def add_named_users(wanted: dict[uuid.UUID, set[str]], plans: dict[uuid.UUID, CheckPlan]) -> None:
    """The mirrored users the checks named beyond their schedules' members (on call by an
    override, in a later shift), in one statement for the batch; not found: new people."""
    pairs = [(cid, uid) for cid, uids in wanted.items() for uid in sorted(uids)]
    if not pairs:
        return
    u = PagerDutyUser
    with transaction() as session:
        rows = session.execute(
            select(u.connection_id, u.pagerduty_id, u.active, u.member_id).where(
                tuple_(u.connection_id, u.pagerduty_id).in_(pairs)
            )
        )
        for cid, uid, active, member_id in rows:
            plans[cid].users[str(uid)] = KnownUser(bool(active), member_id)


def _add_stored(session: Session, checks: dict[uuid.UUID, CheckPlan], at: datetime) -> None:
    """``handoffs.plan.stored_on_call`` for every connection of the batch at once: the on-call
    mirror, overridden by the latest handoff due by ``at`` (the check's instant). The same two
    statements keep the mirror's shifts and the bound rotations' handoff rows (due or not), so
    a window read in full can be compared in memory without another statement."""
    sids = sorted({sid for p in checks.values() for sid in p.names})
    owner = {r.rotation_id: p.cid for p in checks.values() for r in p.rotations if r.schedule_id}
    found: dict[uuid.UUID, dict[str, set[str]]] = {cid: {} for cid in checks}
    if sids:
        oc, sh = PagerDutyOnCall, ScheduledHandoff
        for cid, sid, uid, starts, ends in session.execute(
            select(oc.connection_id, oc.schedule_pagerduty_id, oc.user_pagerduty_id, oc.starts_at)
            .add_columns(oc.ends_at)
            .where(oc.connection_id.in_(list(checks)), oc.schedule_pagerduty_id.in_(sids))
        ):
            found[cid].setdefault(sid, set()).add(uid)
            checks[cid].spans.setdefault(sid, {})[uid] = (starts, ends)
        wanted = set(sids)
        ours = and_(sh.connection_id.in_(list(checks)), sh.schedule_id.in_(sids))
        rows = session.execute(
            select(sh.connection_id, sh.schedule_id, sh.user_ids, sh.at, sh.rotation_id, sh.id)
            .add_columns(sh.generation, sh.shifts)
            .where(or_(ours, sh.rotation_id.in_(list(owner))))
            .order_by(sh.at, sh.id)
        )
        for cid, sid, user_ids, due, rid, row_id, generation, shifts in rows:
            if rid in owner:
                checks[owner[rid]].handoffs.setdefault(rid, []).append(
                    (row_id, due, user_ids, generation, sid, shifts)
                )
            if cid in found and sid in wanted and due <= at:
                found[cid][sid] = set(user_ids)  # by instant: the latest wins, as the loop does
    for cid, plan in checks.items():
        plan.stored_at = at
        plan.stored = {sid: frozenset(found[cid].get(sid, ())) for sid in plan.names}

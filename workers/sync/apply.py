"""The diff: make the mirror and the bound rotations match a snapshot, writing only changes.

For each mirrored table and for the bound rotations' members and on-duty people: read the
current rows once, insert what is new, update what differs, delete what is gone; equal rows are
not touched, so a sync where nothing changed in PagerDuty writes nothing here (only its own
``SyncRun``, written by ``workers.sync.records``). docs/sync-and-disconnect.md has the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from models import (
    Member,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Rotation,
    RotationMember,
    RotationOnDuty,
    normalize_email,
)
from workers import events
from workers.handoffs import plan as handoff_plan
from workers.pagerduty.snapshot import AccountSnapshot
from workers.rotations.locking import bound_rotations_for_update
from workers.sync import messages


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
    members_by_key: dict[str, uuid.UUID] = dict(
        session.execute(
            select(Member.email_key, Member.id).where(Member.workspace_id == conn.workspace_id)
        ).all()
    )

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
    # The lock order (workers.rotations.locking): the caller holds the connection row.
    bound = session.execute(
        bound_rotations_for_update(
            conn.workspace_id,
            Rotation.id,
            Rotation.name,
            Rotation.pagerduty_schedule_id,
            Rotation.last_synced_at,
        )
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
    changes: list[tuple[Any, ...]] = []  # (rotation, schedule, members and on duty before/after)
    for rot in bound:
        sid = rot.pagerduty_schedule_id
        schedule = schedules.get(sid)
        if schedule is None or sid in snapshot.unreadable or sid not in snapshot.timelines:
            # Keep the rotation's last state; say so rather than unbind silently.
            why = snapshot.unreadable.get(sid) or (
                messages.SCHEDULE_NOT_LISTED if schedule is None else messages.ON_CALL_UNREADABLE
            )
            out.warnings.append(messages.rotation_kept(rot.name, sid, why))
            continue
        want_members: dict[uuid.UUID, int] = {}
        for uid in schedule.member_user_ids:
            member_id = member_of_user.get(uid)
            if member_id is not None and member_id not in want_members:
                want_members[member_id] = len(want_members)
        on_call = handoff_plan.on_call_and_plan(session, conn, rot.id, sid, snapshot, now)
        want_duty = {member_of_user[u.id] for u in on_call if u.id in member_of_user}
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
        if after != before:
            members_before = sorted(have_m, key=have_m.__getitem__)
            people = (members_before, list(want_members), have_duty[rot.id], want_duty)
            changes.append((rot.id, sid, *people))

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
    for change in changes:  # events of the rotations whose people this sync changed
        events.rotation_people_changed(session, conn, *change, occurred_at=now)
    out.created += len(member_inserts) + len(duty_inserts)
    out.updated += len(member_updates) + len(touched)
    out.deleted += len(member_deletes) + len(duty_deletes)
    out.rotations_changed = len(touched)

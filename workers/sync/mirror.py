"""The mirror half of the diff: users, schedules and schedule members, from a directory read.

Only ``workers.sync.apply`` calls it, and only when the snapshot read the directory
(``AccountSnapshot.directory_read``): an on-call check leaves these tables as they are. Also the
two row-diff helpers every table uses (``sync_keyed``, ``sync_pairs``).
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
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    normalize_email,
)
from workers.pagerduty.records import Schedule
from workers.pagerduty.snapshot import AccountSnapshot


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


def apply_mirror(
    session: Session,
    conn: PagerDutyConnection,
    snapshot: AccountSnapshot,
    now: datetime,
    out: ApplyResult,
) -> tuple[dict[str, uuid.UUID], dict[str, Schedule]]:
    """Diff users, schedules and schedule members against a directory read; returns which
    workspace member each PagerDuty user is (matched by email) and the snapshot's schedules."""
    members_by_key: dict[str, uuid.UUID] = dict(
        session.execute(
            select(Member.email_key, Member.id).where(Member.workspace_id == conn.workspace_id)
        ).all()
    )
    want_users = _mirror_users(session, conn, snapshot, members_by_key, now, out)
    mirrored = _mirror_schedules(session, conn.id, snapshot, now, out)
    _mirror_members(session, conn.id, mirrored, out)
    member_of_user = {uid: u["member_id"] for uid, u in want_users.items() if u["member_id"]}
    return member_of_user, mirrored.schedules


USER_FIELDS = ("name", "email", "email_key", "time_zone", "active", "member_id")


def _mirror_users(
    session: Session,
    conn: PagerDutyConnection,
    snapshot: AccountSnapshot,
    members_by_key: dict[str, uuid.UUID],
    now: datetime,
    out: ApplyResult,
) -> dict[str, dict[str, Any]]:
    """The users as the read has them (inactive ones are deleted users that schedules still
    name: never linked); returns each one's wanted row."""
    cid = conn.id
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
                *(getattr(PagerDutyUser, f) for f in USER_FIELDS),
            ).where(PagerDutyUser.connection_id == cid)
        )
    }
    if snapshot.users_read:
        # The next listing is due a day after this one's moment (workers.sync.run.users_due).
        conn.users_read_at = snapshot.fetched_at
    else:
        # Only new people were read: everyone else stays as the last listing left them, but
        # is still linked by email to the workspace's members as they are now.
        for pid, have in have_users.items():
            same = {f: getattr(have, f) for f in USER_FIELDS}
            key = have.email_key
            same["member_id"] = members_by_key.get(key) if key and have.active else None
            want_users.setdefault(pid, same)
    sync_keyed(session, PagerDutyUser, cid, want_users, have_users, USER_FIELDS, now, out)
    return want_users


@dataclass(frozen=True)
class MirroredSchedules:
    schedules: dict[str, Schedule]  # what the read listed, by PagerDuty id
    kept: set[str]  # schedules whose members (and v3 details) were not read: kept as mirrored


def _mirror_schedules(
    session: Session, cid: uuid.UUID, snapshot: AccountSnapshot, now: datetime, out: ApplyResult
) -> MirroredSchedules:
    """The schedules (v3 ones PagerDuty would not list this time are kept)."""
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
    for pid in kept & want_schedules.keys() & have_schedules.keys():
        # Listed, but its detail was not read: the time zone only the detail gives stays.
        if want_schedules[pid]["time_zone"] is None:
            want_schedules[pid]["time_zone"] = have_schedules[pid].time_zone
    for pid in kept - want_schedules.keys():
        if pid in have_schedules:
            row = have_schedules[pid]
            want_schedules[pid] = {"name": row.name, "time_zone": row.time_zone, "version": "v3"}
    fields = ("name", "time_zone", "version")
    sync_keyed(session, PagerDutySchedule, cid, want_schedules, have_schedules, fields, now, out)
    return MirroredSchedules(schedules, kept)


def _mirror_members(
    session: Session, cid: uuid.UUID, mirrored: MirroredSchedules, out: ApplyResult
) -> None:
    """The schedules' members (position = PagerDuty's order); a kept schedule keeps its own."""
    sm = PagerDutyScheduleMember
    have_members = {
        (r.schedule_pagerduty_id, r.user_pagerduty_id): r.position
        for r in session.execute(
            select(sm.schedule_pagerduty_id, sm.user_pagerduty_id, sm.position).where(
                sm.connection_id == cid
            )
        )
    }
    want_members: dict[tuple[str, str], int] = {
        key: pos for key, pos in have_members.items() if key[0] in mirrored.kept
    }
    for sid, s in mirrored.schedules.items():
        if sid in mirrored.kept:
            continue
        for position, uid in enumerate(u for u in s.member_user_ids if u and len(u) <= 64):
            want_members.setdefault((sid, uid), position)
    sync_pairs(
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


def sync_keyed(
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


def sync_pairs(
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

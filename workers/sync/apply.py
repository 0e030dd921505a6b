"""The diff: make the mirror and the bound rotations match a snapshot, writing only changes.

For each mirrored table and for the bound rotations' members and on-duty people: read the
current rows once, insert what is new, update what differs, delete what is gone; equal rows are
not touched, so a sync where nothing changed in PagerDuty writes nothing here (only its own
``SyncRun``, written by ``workers.sync.records``). docs/sync-and-disconnect.md has the rules.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from models import (
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutyUser,
    Rotation,
    RotationMember,
    RotationOnDuty,
)
from workers import events
from workers.handoffs import plan as handoff_plan
from workers.pagerduty.snapshot import AccountSnapshot
from workers.rotations.locking import bound_rotations_for_update
from workers.sync import messages
from workers.sync.mirror import ApplyResult, apply_mirror, sync_pairs

__all__ = ["ApplyResult", "apply_snapshot"]


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
    if snapshot.directory_read:
        member_of_user, schedules = apply_mirror(session, conn, snapshot, now, out)
    else:
        # An on-call check: the mirror stays as the last directory read left it; who each
        # PagerDuty user is in the workspace comes from it.
        member_of_user = {
            uid: mid
            for uid, mid in session.execute(
                select(PagerDutyUser.pagerduty_id, PagerDutyUser.member_id).where(
                    PagerDutyUser.connection_id == cid,
                    PagerDutyUser.member_id.is_not(None),
                    PagerDutyUser.active.is_(True),
                )
            )
            if mid is not None
        }
        schedules = {s.id: s for s in snapshot.schedules}

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
    sync_pairs(
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
    out.unmatched_on_call = len({uid for (_sid, uid) in want_oncall if uid not in member_of_user})
    _sync_rotations(session, conn, snapshot, schedules, member_of_user, now, out)
    return out


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
    pending = handoff_plan.pending_by_rotation(session, ids)

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
        on_call = handoff_plan.on_call_and_plan(
            session, conn, rot.id, sid, snapshot, now, pending=pending[rot.id]
        )
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

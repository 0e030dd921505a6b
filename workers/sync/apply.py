"""The diff: make the mirror and the bound rotations match a snapshot, writing only changes.

For each mirrored table and for the bound rotations' members and on-duty people: read the
current rows once, insert what is new, update what differs, delete what is gone; equal rows are
not touched, so a sync where nothing changed in PagerDuty writes nothing here (only its own
``SyncRun``, written by ``workers.sync.records``). docs/sync-and-disconnect.md has the rules.

Who is on call (the on-call mirror and the members on duty) and the rotations' members are
written by ``workers.handoffs.on_call.write_on_call``, the writer the handoff loop uses too.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import PagerDutyConnection, PagerDutyUser, Rotation
from workers.core.connection_rows import bound_rotations_for_update
from workers.handoffs import plan as handoff_plan
from workers.handoffs.bound import schedules_of
from workers.handoffs.on_call import RotationWant, write_on_call
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync import messages
from workers.sync.mirror import ApplyResult, apply_mirror
from workers.sync.upcoming import apply_upcoming

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

    # -- who is on call, and the bound rotations' people: through the one writer --
    bound, followed = _sync_rotations(session, conn, snapshot, schedules, member_of_user, now, out)
    # -- their next 7 days, when this read was the upcoming read ("your shift moved") --
    rotations = [(r.id, followed.get(r.id, [])) for r in bound]
    apply_upcoming(session, conn, snapshot, rotations, member_of_user, now, out)
    return out


def _sync_rotations(
    session: Session,
    conn: PagerDutyConnection,
    snapshot: AccountSnapshot,
    schedules: dict[str, Any],
    member_of_user: dict[str, uuid.UUID],
    now: datetime,
    out: ApplyResult,
) -> tuple[Sequence[Any], dict[uuid.UUID, list[str]]]:
    """Who is on call and the bound rotations' people; returns the bound rotations (locked)
    and the schedules each follows."""
    # The lock order (workers.core.connection_rows): the caller holds the connection row.
    bound = session.execute(
        bound_rotations_for_update(
            conn.workspace_id,
            Rotation.id,
            Rotation.name,
            Rotation.pagerduty_schedule_id,
            Rotation.last_synced_at,
        )
    ).all()
    followed = schedules_of(session, [r.id for r in bound])
    # A rotation is re-planned, and written, when any of its schedules was not confirmed.
    replanned = [
        r.id for r in bound if any(s not in snapshot.confirmed for s in followed.get(r.id, []))
    ]
    pending = handoff_plan.pending_by_rotation(session, replanned)
    on_call = handoff_plan.on_call_now(snapshot, now)
    # Bound schedules this read has no on-call (or no listing) for: their mirror rows stay.
    unread = {
        sid
        for sids in followed.values()
        for sid in sids
        if schedules.get(sid) is None or sid in snapshot.unreadable or sid not in snapshot.timelines
    }
    # Schedules whose on-call is kept as it is (the mirror's rows and their rotations alike).
    kept = set(snapshot.unreadable) | snapshot.confirmed | unread
    wants: list[RotationWant] = []
    for rot in bound:
        sids = followed.get(rot.id, [])
        if all(sid in snapshot.confirmed for sid in sids):
            continue  # the check found on call whom the stored timeline says: it stays
        want = _rotation_want(rot, sids, unread, schedules, snapshot, member_of_user, out)
        if want is None:
            continue
        rows = pending[rot.id]
        for sid in sids:
            if sid in snapshot.confirmed or sid in unread:
                continue  # its rows stay as they are
            own = [row for row in rows if row[4] == sid or row[4] not in sids]
            handoff_plan.replan(session, conn, rot.id, sid, snapshot, now, pending=own)
            rows = [row for row in rows if row not in own]
        wants.append(want)
    written = write_on_call(
        session,
        conn,
        # A kept rotation keeps its schedule's mirror too: on duty and unmatched stay together.
        on_call={sid: people for sid, people in on_call.items() if sid not in kept},
        rotations=wants,
        member_of_user=member_of_user,
        now=now,
        cause="sync",
        synced=True,
        keep_schedules=kept,
    )
    out.created += written.created
    out.updated += written.updated
    out.deleted += written.deleted
    out.rotations_changed = written.rotations_touched
    out.unmatched_on_call = len({uid for _sid, uid in written.on_call if uid not in member_of_user})
    return bound, followed


def _rotation_want(
    rot: Any,
    sids: Sequence[str],
    unread: Collection[str],
    schedules: dict[str, Any],
    snapshot: AccountSnapshot,
    member_of_user: dict[str, uuid.UUID],
    out: ApplyResult,
) -> RotationWant | None:
    """What a bound rotation becomes: the matched members of its schedules in order (schedule
    by schedule, each member once) and everyone on call in any of them; or None (with a
    warning) when it keeps its last state because none of its schedules could be read. A
    schedule among several that could not be read keeps its last on-call people (the mirror's),
    and the rotation's members stay as they are when one of its schedules is not listed."""
    for sid in sids:
        if sid in unread:
            # Say so rather than unbind silently.
            why = snapshot.unreadable.get(sid) or (
                messages.SCHEDULE_NOT_LISTED
                if schedules.get(sid) is None
                else messages.ON_CALL_UNREADABLE
            )
            kept = messages.rotation_kept if len(sids) == 1 else messages.schedule_kept
            out.warnings.append(kept(rot.name, sid, why))
    if not sids or all(sid in unread for sid in sids):
        return None
    members: dict[uuid.UUID, None] = {}
    listed = [schedules.get(sid) for sid in sids]
    for schedule in listed:
        if schedule is not None:
            members.update(
                dict.fromkeys(
                    member_of_user[uid] for uid in schedule.member_user_ids if uid in member_of_user
                )
            )
    return RotationWant(
        rot.id,
        tuple(sids),
        # A schedule's members unknown (not listed): the rotation's stay as they are.
        list(members) if all(listed) else None,
        never_synced=rot.last_synced_at is None,
    )

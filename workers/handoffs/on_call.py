"""THE writer of who is on call for bound rotations, used by the sync and the handoff loop.

Who is on call is stored twice and the API's rotation view reads both: ``pagerduty_oncalls``
(the on-call mirror: every PagerDuty user on call for a bound schedule; those no member matches
are the view's ``unmatched_on_call``) and ``rotation_on_duty`` (the members among them).
``write_on_call`` is the only code that writes either. It derives the members on duty from the
very on-call it mirrors, in the caller's transaction, so the two change together: at a handoff
to someone no member matches, ``on_duty`` empties and ``unmatched_on_call`` names them in the
same commit. It also writes the rotation members the sync read, the events of every rotation
whose people changed (``events.rotation_people_changed``) and the on-call history
(``workers.handoffs.duty_history``: who was on duty, interval by interval, for the on-call
report). Equal rows are not touched.

Locks are the caller's, in THE order (``workers.core.connection_rows``): the connection row (the
mirror's rows are the connection's), then the rotations written. Every row diffed here is read
after those locks, so two writers (a sync and a handoff round, rounds on two nodes) take turns
and the second sees what the first committed: its inserts never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from models import PagerDutyConnection, PagerDutyOnCall, Rotation, RotationMember, RotationOnDuty
from workers import events
from workers.handoffs.duty_history import OnDuty, record_people

# The shift that has a PagerDuty user on call: (start, end), None where PagerDuty gave none.
Span = tuple[datetime | None, datetime | None]
# Who is on call for one schedule: PagerDuty user id -> their shift.
OnCall = Mapping[str, Span]


@dataclass(frozen=True)
class RotationWant:
    """A bound rotation to write, its row locked by the caller."""

    rotation_id: uuid.UUID
    # The schedules it follows (first = ``rotations.pagerduty_schedule_id``): on duty is
    # everyone on call in any of them, from ``on_call`` or, for those not in it, the mirror.
    schedule_ids: tuple[str, ...]
    members: Sequence[uuid.UUID] | None = None  # in rotation order; None: as they are
    never_synced: bool = False  # the sync stamps it even when nothing changed


@dataclass
class Written:
    """Rows written (the sync adds them to its counts) and what the mirror holds after."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    rotations_touched: int = 0  # rotation rows stamped
    rotations_changed: int = 0  # rotations whose people changed (each has its events)
    on_call: set[tuple[str, str]] = field(default_factory=set)  # (schedule, user), in scope


def write_on_call(
    session: Session,
    conn: PagerDutyConnection,
    *,
    on_call: Mapping[str, OnCall],
    rotations: Sequence[RotationWant],
    member_of_user: Mapping[str, uuid.UUID],
    now: datetime,
    cause: str,
    synced: bool = False,
    keep_schedules: Collection[str] | None = None,
) -> Written:
    """Make ``on_call`` (schedule id -> who is on call) true in the mirror and, through
    ``member_of_user``, in the on-duty people of ``rotations``; ``now`` is when it became true.

    ``keep_schedules`` None: only the schedules in ``on_call`` are written (a handoff). A
    collection: the whole connection's mirror is (a sync); rows of other schedules go, except
    those of ``keep_schedules`` (not readable this time). ``synced``: the sync's write, which
    stamps ``last_synced_at``.
    """
    out = Written()
    _write_mirror(session, conn.id, on_call, keep_schedules, out)
    people = _people_on_call(session, conn.id, on_call, rotations, out)
    _write_rotations(session, conn, people, rotations, member_of_user, now, cause, synced, out)
    return out


def _people_on_call(
    session: Session,
    cid: uuid.UUID,
    on_call: Mapping[str, OnCall],
    rotations: Sequence[RotationWant],
    out: Written,
) -> dict[str, list[str]]:
    """Schedule id -> who is on call (PagerDuty user ids, on-call order) for every schedule of
    ``rotations``: ``on_call``'s, else what the mirror holds now (one statement for the rest: a
    handoff in one of a rotation's schedules keeps the others' people on duty)."""
    people: dict[str, list[str]] = {sid: list(p) for sid, p in on_call.items()}
    rest = {sid for r in rotations for sid in r.schedule_ids if sid not in on_call}
    if rest:
        oc = PagerDutyOnCall
        for sid, uid in session.execute(
            select(oc.schedule_pagerduty_id, oc.user_pagerduty_id)
            .where(oc.connection_id == cid, oc.schedule_pagerduty_id.in_(sorted(rest)))
            .order_by(oc.schedule_pagerduty_id, oc.starts_at, oc.user_pagerduty_id)
        ):
            people.setdefault(sid, []).append(uid)
    return people


def _write_mirror(
    session: Session,
    cid: uuid.UUID,
    on_call: Mapping[str, OnCall],
    keep_schedules: Collection[str] | None,
    out: Written,
) -> None:
    oc = PagerDutyOnCall
    scope: Any = oc.connection_id == cid
    if keep_schedules is None:
        if not on_call:
            return
        scope = scope & oc.schedule_pagerduty_id.in_(list(on_call))
    have: dict[tuple[str, str], Span] = {
        (sid, uid): (starts, ends)
        for sid, uid, starts, ends in session.execute(
            select(oc.schedule_pagerduty_id, oc.user_pagerduty_id, oc.starts_at, oc.ends_at).where(
                scope
            )
        )
    }
    kept = set(keep_schedules or ()) - set(on_call)
    want = {key: span for key, span in have.items() if key[0] in kept}
    for sid, people in on_call.items():
        for uid, span in people.items():
            want[(sid, uid)] = span
    inserts = [
        {
            "connection_id": cid,
            "schedule_pagerduty_id": sid,
            "user_pagerduty_id": uid,
            "starts_at": starts,
            "ends_at": ends,
        }
        for (sid, uid), (starts, ends) in want.items()
        if (sid, uid) not in have
    ]
    changed = [key for key, span in want.items() if key in have and have[key] != span]
    gone = [key for key in have if key not in want]
    if inserts:
        session.execute(insert(oc), inserts)
    for sid, uid in changed:
        starts, ends = want[(sid, uid)]
        session.execute(
            update(oc)
            .where(scope, oc.schedule_pagerduty_id == sid, oc.user_pagerduty_id == uid)
            .values(starts_at=starts, ends_at=ends)
            .execution_options(synchronize_session=False)
        )
    if gone:
        session.execute(
            delete(oc)
            .where(scope, tuple_(oc.schedule_pagerduty_id, oc.user_pagerduty_id).in_(gone))
            .execution_options(synchronize_session=False)
        )
    out.created += len(inserts)
    out.updated += len(changed)
    out.deleted += len(gone)
    out.on_call = set(want)


def _write_rotations(
    session: Session,
    conn: PagerDutyConnection,
    on_call: Mapping[str, Sequence[str]],
    rotations: Sequence[RotationWant],
    member_of_user: Mapping[str, uuid.UUID],
    now: datetime,
    cause: str,
    synced: bool,
    out: Written,
) -> None:
    if not rotations:
        return
    ids = [r.rotation_id for r in rotations]
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
    history: dict[uuid.UUID, OnDuty] = {}  # everyone on duty, for the on-call history
    for want in rotations:
        rid = want.rotation_id
        have_m = have_members[rid]
        members_before = sorted(have_m, key=have_m.__getitem__)
        want_members: dict[uuid.UUID, int] = (
            {mid: have_m[mid] for mid in members_before}
            if want.members is None
            else {mid: pos for pos, mid in enumerate(dict.fromkeys(want.members))}
        )
        # On duty: the members among the PagerDuty users on call in any of its schedules, the
        # very ones mirrored (each once).
        users = list(dict.fromkeys(u for sid in want.schedule_ids for u in on_call.get(sid, ())))
        want_duty = {member_of_user[uid] for uid in users if uid in member_of_user}
        history[rid] = OnDuty(want_duty, [uid for uid in users if uid not in member_of_user])
        before = len(member_inserts) + len(member_updates) + len(member_deletes)
        before += len(duty_inserts) + len(duty_deletes)
        for mid, pos in want_members.items():
            if mid not in have_m:
                member_inserts.append({"rotation_id": rid, "member_id": mid, "position": pos})
            elif have_m[mid] != pos:
                member_updates.append((rid, mid, pos))
        member_deletes += [(rid, mid) for mid in have_m if mid not in want_members]
        duty_inserts += [
            {"rotation_id": rid, "member_id": mid, "since": now}
            for mid in want_duty - have_duty[rid]
        ]
        duty_deletes += [(rid, mid) for mid in have_duty[rid] - want_duty]
        after = len(member_inserts) + len(member_updates) + len(member_deletes)
        after += len(duty_inserts) + len(duty_deletes)
        if after != before or (synced and want.never_synced):
            touched.append(rid)
        if after != before:
            people = (members_before, list(want_members), have_duty[rid], want_duty)
            changes.append((rid, want.schedule_ids, *people))

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
        # A sync also says when it last changed the rotation (and stamps its first sync); a
        # rotation nothing changed in is not written.
        stamp: dict[str, Any] = {"updated_at": now}
        if synced:
            stamp["last_synced_at"] = now
        session.execute(
            update(Rotation)
            .where(Rotation.id.in_(touched))
            .values(**stamp)
            .execution_options(synchronize_session=False)
        )
    # Same transaction, same instant: the history never disagrees with who is on duty. (Its
    # rows are not in the sync's counts, which are the mirror's and the rotations'.)
    record_people(
        session,
        workspace_id=conn.workspace_id,
        connection_id=conn.id,
        people=history,
        now=now,
        source=cause,
    )
    for change in changes:  # the events of the rotations whose people changed
        events.rotation_people_changed(session, conn, *change, occurred_at=now, cause=cause)
    out.created += len(member_inserts) + len(duty_inserts)
    out.updated += len(member_updates) + len(touched)
    out.deleted += len(member_deletes) + len(duty_deletes)
    out.rotations_touched = len(touched)
    out.rotations_changed = len(changes)

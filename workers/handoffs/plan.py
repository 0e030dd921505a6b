"""Planning: the instants in a schedule's rendered timeline where who is on call changes.

The sync reads each bound schedule's on-call over ``[fetched_at, fetched_at + horizon)``. Every
shift start or end strictly inside that window, where the set of people on call differs from the
set just before it, is a handoff. The window's own end is not one: a shift "ending" there is
only PagerDuty's rendering cut at ``until``.

A handoff row carries who is on call from its instant as the on-call mirror holds them (each
user with their shift, ``on_call_spans``): the sync's "now" and every handoff are written
through the one writer of who is on call (``workers.handoffs.on_call``) from the same data.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from models import PagerDutyConnection, PagerDutyOnCall, ScheduledHandoff
from workers.core.db import transaction
from workers.handoffs.on_call import OnCall, Span
from workers.pagerduty.records import Timeline
from workers.pagerduty.snapshot import AccountSnapshot


@dataclass(frozen=True)
class PlannedHandoff:
    at: datetime
    user_ids: tuple[str, ...]  # PagerDuty user ids on call from ``at`` (empty: nobody)


def handoffs_in(timeline: Timeline, since: datetime) -> list[PlannedHandoff]:
    """The on-call changes in ``(since, timeline.until)``, in time order."""
    until = timeline.until
    instants = sorted(
        {
            moment
            for shift in timeline.shifts
            for moment in (shift.start, shift.end)
            if moment is not None and since < moment < until
        }
    )
    previous = {u.id for u in timeline.on_call_at(since)}
    out: list[PlannedHandoff] = []
    for moment in instants:
        ids = tuple(u.id for u in timeline.on_call_at(moment) if u.id and len(u.id) <= 64)
        if set(ids) != previous:
            out.append(PlannedHandoff(moment, ids))
            previous = set(ids)
    return out


def on_call_spans(timeline: Timeline, moment: datetime) -> dict[str, Span]:
    """Who is on call at ``moment`` as the mirror holds them: user id -> their shift (the first
    covering one, as ``Timeline.on_call_at``), ids the mirror cannot hold left out."""
    out: dict[str, Span] = {}
    for shift in timeline.shifts:
        uid = shift.user.id
        if uid and len(uid) <= 64 and shift.covers(moment):
            out.setdefault(uid, (shift.start, shift.end))
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def encode_shifts(spans: OnCall) -> list[list[str | None]]:
    """``scheduled_handoffs.shifts``: ``[user id, start, end]`` in on-call order."""
    return [[uid, _iso(start), _iso(end)] for uid, (start, end) in spans.items()]


def row_on_call(row: ScheduledHandoff) -> dict[str, Span]:
    """Who a handoff row puts on call, with their shifts. A row planned before its shifts were
    stored (migration 0007) gives its instant as their start, no end: the next sync corrects."""
    if row.shifts is None:
        return dict.fromkeys(row.user_ids, (row.at, None))
    return {
        str(uid): (
            None if start is None else datetime.fromisoformat(start),
            None if end is None else datetime.fromisoformat(end),
        )
        for uid, start, end in row.shifts
    }


# A pending row as ``replace_pending`` compares it:
# (id, at, user_ids, generation, schedule_id, shifts).
PendingRow = tuple[int, datetime, list[str], int, str, list[list[str | None]] | None]


def pending_by_rotation(
    session: Session, rotation_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[PendingRow]]:
    """The pending handoffs of many rotations in one statement (a sync re-plans every bound
    rotation: one query each was 300 statements of a large account's 313 on a quiet check)."""
    out: dict[uuid.UUID, list[PendingRow]] = {rid: [] for rid in rotation_ids}
    if not rotation_ids:
        return out
    for rid, row_id, at, user_ids, generation, schedule_id, shifts in session.execute(
        select(
            ScheduledHandoff.rotation_id,
            ScheduledHandoff.id,
            ScheduledHandoff.at,
            ScheduledHandoff.user_ids,
            ScheduledHandoff.generation,
            ScheduledHandoff.schedule_id,
            ScheduledHandoff.shifts,
        ).where(ScheduledHandoff.rotation_id.in_(rotation_ids))
    ):
        out.setdefault(rid, []).append((row_id, at, user_ids, generation, schedule_id, shifts))
    return out


def replace_pending(
    session: Session,
    *,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID,
    generation: int,
    schedule_id: str,
    timeline: Timeline,
    since: datetime,
    now: datetime,
    pending: list[PendingRow] | None = None,
) -> int:
    """Make the rotation's pending handoffs those of a freshly read timeline (in the sync's
    apply transaction, under the rotation's row lock), writing only differences: a quiet sync
    writes nothing here. Returns how many are planned.

    Pending rows not in the new plan go, due ones included: the sync that calls this sets who
    is on call now from the same fresh data, so nothing is lost. ``pending``: the rotation's
    rows as ``pending_by_rotation`` read them under the same lock (read here when not given).
    """
    planned = {p.at: list(p.user_ids) for p in handoffs_in(timeline, since)}
    shifts = {at: encode_shifts(on_call_spans(timeline, at)) for at in planned}
    keep: set[datetime] = set()
    gone: list[int] = []
    if pending is None:
        pending = pending_by_rotation(session, [rotation_id])[rotation_id]
    for row_id, at, user_ids, row_generation, row_schedule, row_shifts in pending:
        want = (planned.get(at), generation, schedule_id, shifts.get(at))
        if (user_ids, row_generation, row_schedule, row_shifts) == want:
            keep.add(at)
        else:
            gone.append(row_id)
    if gone:
        session.execute(
            delete(ScheduledHandoff)
            .where(ScheduledHandoff.id.in_(gone))
            .execution_options(synchronize_session=False)
        )
    new = [
        {
            "rotation_id": rotation_id,
            "connection_id": connection_id,
            "generation": generation,
            "schedule_id": schedule_id,
            "at": at,
            "user_ids": ids,
            "shifts": shifts[at],
            "planned_at": now,
        }
        for at, ids in planned.items()
        if at not in keep
    ]
    if new:
        session.execute(insert(ScheduledHandoff), new)
    return len(planned)


def stored_on_call(
    session: Session, connection_id: uuid.UUID, schedule_ids: Collection[str], at: datetime
) -> dict[str, frozenset[str]]:
    """Who the stored timeline has on call at ``at`` for these schedules (PagerDuty user ids):
    the latest handoff due by then that the loop has not applied yet, else the on-call mirror.
    The on-call check compares what PagerDuty says now with this (workers.pagerduty.window)."""
    ids = list(schedule_ids)
    out: dict[str, set[str]] = {sid: set() for sid in ids}
    if not ids:
        return {}
    oc = PagerDutyOnCall
    for sid, uid in session.execute(
        select(oc.schedule_pagerduty_id, oc.user_pagerduty_id).where(
            oc.connection_id == connection_id, oc.schedule_pagerduty_id.in_(ids)
        )
    ):
        out[sid].add(uid)
    due: dict[str, list[str]] = {}
    for sid, user_ids in session.execute(
        select(ScheduledHandoff.schedule_id, ScheduledHandoff.user_ids)
        .where(
            ScheduledHandoff.connection_id == connection_id,
            ScheduledHandoff.schedule_id.in_(ids),
            ScheduledHandoff.at <= at,
        )
        .order_by(ScheduledHandoff.at, ScheduledHandoff.id)
    ):
        due[sid] = user_ids  # ordered by instant: the latest wins, as the loop applies them
    out.update((sid, set(user_ids)) for sid, user_ids in due.items())
    return {sid: frozenset(people) for sid, people in out.items()}


def read_stored_on_call(
    connection_id: uuid.UUID, schedule_ids: Collection[str], at: datetime
) -> dict[str, frozenset[str]]:
    """``stored_on_call`` in a transaction of its own (the check reads before it applies)."""
    with transaction() as session:
        return stored_on_call(session, connection_id, schedule_ids, at)


def discard_pending(session: Session, *, rotation_id: uuid.UUID) -> None:
    """A rotation unbound or re-bound: its planned handoffs belong to the old binding."""
    session.execute(
        delete(ScheduledHandoff)
        .where(ScheduledHandoff.rotation_id == rotation_id)
        .execution_options(synchronize_session=False)
    )


def present(snapshot: AccountSnapshot, timeline: Timeline, now: datetime) -> datetime:
    """The instant the sync writes as "now" for a timeline: the apply instant when the timeline
    covers it, not the fetch. A handoff that fell due while the sync was reading (and the loop
    may already have applied) is then neither undone nor planned again."""
    return now if snapshot.fetched_at <= now < timeline.until else snapshot.fetched_at


def on_call_now(snapshot: AccountSnapshot, now: datetime) -> dict[str, dict[str, Span]]:
    """Who is on call at ``present`` for every schedule whose timeline the sync read."""
    return {
        sid: on_call_spans(timeline, present(snapshot, timeline, now))
        for sid, timeline in snapshot.timelines.items()
        if len(sid) <= 64
    }


def replan(
    session: Session,
    conn: PagerDutyConnection,
    rotation_id: uuid.UUID,
    schedule_id: str,
    snapshot: AccountSnapshot,
    now: datetime,
    pending: list[PendingRow] | None = None,
) -> None:
    """The sync's hook for a rotation whose schedule's timeline was read: re-plan its handoffs
    after ``present`` (the sync writes who is on call then, ``on_call_now``)."""
    timeline = snapshot.timelines[schedule_id]
    replace_pending(
        session,
        rotation_id=rotation_id,
        connection_id=conn.id,
        generation=conn.generation,
        schedule_id=schedule_id,
        timeline=timeline,
        since=present(snapshot, timeline, now),
        now=now,
        pending=pending,
    )

"""Planning: the instants in a schedule's rendered timeline where who is on call changes.

The sync reads each bound schedule's on-call over ``[fetched_at, fetched_at + horizon)``. Every
shift start or end strictly inside that window, where the set of people on call differs from the
set just before it, is a handoff. The window's own end is not one: a shift "ending" there is
only PagerDuty's rendering cut at ``until``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from models import PagerDutyConnection, ScheduledHandoff
from workers.pagerduty.records import Timeline, UserRef
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


# A pending row as ``replace_pending`` compares it: (id, at, user_ids, generation, schedule_id).
PendingRow = tuple[int, datetime, list[str], int, str]


def pending_by_rotation(
    session: Session, rotation_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[PendingRow]]:
    """The pending handoffs of many rotations in one statement (a sync re-plans every bound
    rotation: one query each was 300 statements of a large account's 313 on a quiet check)."""
    out: dict[uuid.UUID, list[PendingRow]] = {rid: [] for rid in rotation_ids}
    if not rotation_ids:
        return out
    for rid, row_id, at, user_ids, generation, schedule_id in session.execute(
        select(
            ScheduledHandoff.rotation_id,
            ScheduledHandoff.id,
            ScheduledHandoff.at,
            ScheduledHandoff.user_ids,
            ScheduledHandoff.generation,
            ScheduledHandoff.schedule_id,
        ).where(ScheduledHandoff.rotation_id.in_(rotation_ids))
    ):
        out.setdefault(rid, []).append((row_id, at, user_ids, generation, schedule_id))
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
    keep: set[datetime] = set()
    gone: list[int] = []
    if pending is None:
        pending = pending_by_rotation(session, [rotation_id])[rotation_id]
    for row_id, at, user_ids, row_generation, row_schedule in pending:
        want = (planned.get(at), generation, schedule_id)
        if (user_ids, row_generation, row_schedule) == want:
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
            "planned_at": now,
        }
        for at, ids in planned.items()
        if at not in keep
    ]
    if new:
        session.execute(insert(ScheduledHandoff), new)
    return len(planned)


def discard_pending(session: Session, *, rotation_id: uuid.UUID) -> None:
    """A rotation unbound or re-bound: its planned handoffs belong to the old binding."""
    session.execute(
        delete(ScheduledHandoff)
        .where(ScheduledHandoff.rotation_id == rotation_id)
        .execution_options(synchronize_session=False)
    )


def on_call_and_plan(
    session: Session,
    conn: PagerDutyConnection,
    rotation_id: uuid.UUID,
    schedule_id: str,
    snapshot: AccountSnapshot,
    now: datetime,
    pending: list[PendingRow] | None = None,
) -> tuple[UserRef, ...]:
    """The sync's hook for a rotation whose schedule's timeline was read: re-plan its handoffs
    and return who is on call now.

    "Now" is the apply instant when the timeline covers it, not the fetch: a handoff that fell
    due while the sync was reading is then neither undone nor planned again.
    """
    timeline = snapshot.timelines[schedule_id]
    moment = now if snapshot.fetched_at <= now < timeline.until else snapshot.fetched_at
    replace_pending(
        session,
        rotation_id=rotation_id,
        connection_id=conn.id,
        generation=conn.generation,
        schedule_id=schedule_id,
        timeline=timeline,
        since=moment,
        now=now,
        pending=pending,
    )
    return timeline.on_call_at(moment)

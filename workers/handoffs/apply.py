"""Applying: one round of the ``handoffs`` loop makes due handoffs true, each exactly once.

Per connection that has due rows, one transaction takes the documented locks in order
(workers.core.connection_rows: the connection row, then the workspace's bound rotations), then
claims the due rows (``FOR UPDATE SKIP LOCKED``, deleted at once, applied or not). Per schedule
its latest valid due row wins (after downtime the people on call *now* are what count: one
change, one event) and goes through the one writer of who is on call
(``workers.handoffs.on_call.write_on_call``, the sync's too): the schedule's on-call mirror and
the on-duty members of every rotation bound to it change together, with
``rotation.on_duty.changed`` (cause ``handoff``, at the instant). A crash rolls all of it back
and the next round (any node) redoes it; a committed round has deleted its rows, so nothing is
applied twice. Rows whose binding or connection generation no longer matches are deleted
unapplied.

The connection row is taken ``SKIP LOCKED``: a connection locked by a sync or by another node's
round is left to it this round (the sync re-plans; the other node applies). Rounds on several
nodes therefore take turns per connection, and the second finds the rows gone.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models import (
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutyUser,
    RotationMode,
    ScheduledHandoff,
    utcnow,
)
from models.connection import statuses
from workers.core.connection_rows import bound_rotations_for_update
from workers.core.db import session_factory
from workers.handoffs.bound import schedules_of
from workers.handoffs.on_call import RotationWant, write_on_call
from workers.handoffs.plan import row_on_call

# Connections handled per round; a round with more due connections returns 0 to go again.
BATCH = 50
APPLYING = statuses(lambda m: m.applying)  # models.connection.STATUS_MEANINGS


def apply_connection(session: Session, connection_id: uuid.UUID, now: datetime) -> int | None:
    """Apply one connection's due rows (caller commits). Returns rotations changed, or None
    when the connection row was locked by someone else."""
    conn = session.execute(
        select(PagerDutyConnection)
        .where(PagerDutyConnection.id == connection_id)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if conn is None:
        return None
    rotations = {
        r.id: r for r in session.execute(bound_rotations_for_update(conn.workspace_id)).scalars()
    }
    rows = list(
        session.execute(
            select(ScheduledHandoff)
            .where(ScheduledHandoff.connection_id == conn.id, ScheduledHandoff.at <= now)
            .order_by(ScheduledHandoff.at, ScheduledHandoff.id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not rows:
        return 0
    # Claimed: deleted in this transaction, applied or not. A crash rolls the claim back with
    # everything else; a committed claim means no other round can apply these rows.
    claimed = set(
        session.execute(
            delete(ScheduledHandoff)
            .where(ScheduledHandoff.id.in_([r.id for r in rows]))
            .returning(ScheduledHandoff.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    # Who is on call is a schedule's: per schedule, its latest valid due row (ordered by at).
    # A rotation follows 1 to 10 schedules (workers.handoffs.bound); a row is valid while its
    # rotation still follows its schedule.
    followed = schedules_of(session, list(rotations))
    latest: dict[str, ScheduledHandoff] = {}
    for row in rows:
        rot = rotations.get(row.rotation_id)
        if (
            row.id in claimed
            and conn.status in APPLYING
            and row.generation == conn.generation
            and rot is not None
            and rot.mode == RotationMode.PAGERDUTY
            and row.schedule_id in followed.get(rot.id, ())
        ):
            latest[row.schedule_id] = row
    on_call = {sid: row_on_call(row) for sid, row in latest.items()}
    # Who the written rotations' people are: those of the due rows, and those their other
    # schedules keep on duty (the mirror's), matched in one statement.
    others = {
        sid
        for sids in followed.values()
        if any(s in latest for s in sids)
        for sid in sids
        if sid not in latest
    }
    user_ids = {uid for people in on_call.values() for uid in people}
    user_ids |= _mirror_users(session, conn.id, sorted(others))
    member_of_user = _matched(session, conn.id, user_ids) if user_ids else {}
    # Per instant (in order), the schedules changing then: the one writer writes their mirror
    # and every rotation following any of them, once, at that instant.
    by_instant: dict[datetime, list[str]] = {}
    for sid, row in sorted(latest.items(), key=lambda item: (item[1].at, item[1].id)):
        by_instant.setdefault(row.at, []).append(sid)
    changed = 0
    for at, sids in by_instant.items():
        written = write_on_call(
            session,
            conn,
            on_call={sid: on_call[sid] for sid in sids},
            rotations=[
                RotationWant(rid, tuple(followed[rid]))
                for rid in rotations
                if any(sid in sids for sid in followed.get(rid, ()))
            ],
            member_of_user=member_of_user,
            now=at,
            cause="handoff",
        )
        changed += written.rotations_changed
    return changed


def _mirror_users(session: Session, cid: uuid.UUID, schedule_ids: list[str]) -> set[str]:
    if not schedule_ids:
        return set()
    oc = PagerDutyOnCall
    return set(
        session.execute(
            select(oc.user_pagerduty_id).where(
                oc.connection_id == cid, oc.schedule_pagerduty_id.in_(schedule_ids)
            )
        ).scalars()
    )


def _matched(session: Session, cid: uuid.UUID, user_ids: set[str]) -> dict[str, uuid.UUID]:
    return {
        uid: mid
        for uid, mid in session.execute(
            select(PagerDutyUser.pagerduty_id, PagerDutyUser.member_id).where(
                PagerDutyUser.connection_id == cid,
                PagerDutyUser.pagerduty_id.in_(sorted(user_ids)),
                PagerDutyUser.member_id.is_not(None),
            )
        )
        if mid is not None
    }


def run_round(url: str | None = None, *, now: datetime | None = None) -> float:
    """One round; returns seconds until the earliest pending row (0: more due work waits)."""
    factory = session_factory(url)
    now = now or utcnow()
    with factory() as session:
        due = list(
            session.execute(
                select(ScheduledHandoff.connection_id)
                .where(ScheduledHandoff.at <= now)
                .group_by(ScheduledHandoff.connection_id)
                .order_by(func.min(ScheduledHandoff.at))
                .limit(BATCH)
            ).scalars()
        )
    skipped = False
    for cid in due:
        # One transaction per connection: a failure in one rolls back only its own rows.
        with factory() as session, session.begin():
            if apply_connection(session, cid, now) is None:
                skipped = True
    if len(due) >= BATCH:
        return 0.0
    with factory() as session:
        earliest = session.execute(select(func.min(ScheduledHandoff.at))).scalar_one_or_none()
    if skipped:
        return 0.1  # a locked connection: try again soon rather than at max_sleep
    if earliest is None:
        return 60.0
    return max(0.0, (earliest - utcnow()).total_seconds())


def step() -> float:
    """The loop body (workers.tasking.loops clamps the answer to max_sleep)."""
    return run_round()

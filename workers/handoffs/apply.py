"""Applying: one round of the ``handoffs`` loop makes due handoffs true, each exactly once.

Per connection that has due rows, one transaction takes the documented locks in order
(workers.rotations.locking: the connection row, then the workspace's bound rotations), then the
due rows ``FOR UPDATE SKIP LOCKED``, sets each rotation's on-duty people to its latest due row
(earlier due rows of the same rotation are superseded: after downtime the person on call *now*
is what counts), emits ``rotation.on_duty.changed`` with cause ``handoff`` and deletes the rows.
A crash rolls all of it back and the next round (any node) redoes it; a committed round has
deleted its rows, so nothing is applied twice. Rows whose binding or connection generation no
longer matches are deleted unapplied.

The connection row is taken ``SKIP LOCKED``: a connection locked by a sync or by another node's
round is left to it this round (the sync re-plans; the other node applies).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyUser,
    RotationMode,
    ScheduledHandoff,
    utcnow,
)
from workers.core.db import session_factory
from workers.rotations.locking import bound_rotations_for_update
from workers.rotations.on_duty import set_on_duty

# Connections handled per round; a round with more due connections returns 0 to go again.
BATCH = 50
APPLYING = frozenset(
    {ConnectionStatus.CONNECTED, ConnectionStatus.VALIDATING, ConnectionStatus.NEEDS_REAUTH}
)


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
            .order_by(ScheduledHandoff.rotation_id, ScheduledHandoff.at)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    latest: dict[uuid.UUID, ScheduledHandoff] = {}
    for row in rows:
        latest[row.rotation_id] = row  # ordered by at: the last one wins
    valid = {
        rid: row
        for rid, row in latest.items()
        if conn.status in APPLYING
        and row.generation == conn.generation
        and rid in rotations
        and rotations[rid].mode == RotationMode.PAGERDUTY
        and rotations[rid].pagerduty_schedule_id == row.schedule_id
    }
    user_ids = {uid for row in valid.values() for uid in row.user_ids}
    member_of_user: dict[str, uuid.UUID] = {}
    if user_ids:
        member_of_user = {
            uid: mid
            for uid, mid in session.execute(
                select(PagerDutyUser.pagerduty_id, PagerDutyUser.member_id).where(
                    PagerDutyUser.connection_id == conn.id,
                    PagerDutyUser.pagerduty_id.in_(user_ids),
                    PagerDutyUser.member_id.is_not(None),
                )
            )
            if mid is not None
        }
    changed = 0
    for rid, row in valid.items():
        want = {member_of_user[u] for u in row.user_ids if u in member_of_user}
        if set_on_duty(session, conn, rid, row.schedule_id, want, now=row.at, cause="handoff"):
            changed += 1
    if rows:
        session.execute(
            delete(ScheduledHandoff)
            .where(ScheduledHandoff.id.in_([r.id for r in rows]))
            .execution_options(synchronize_session=False)
        )
    return changed


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

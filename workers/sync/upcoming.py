"""Upcoming shifts ("your shift moved", issue 22): keep each bound rotation's next 7 days of
planned on-duty intervals and publish ``rotation.upcoming_changed`` when a read finds them
changed (an override, a swap, a layer edit, a member removed).

* **When** (``upcoming_due``): the directory read becomes the upcoming read (its on-call window
  7 days instead of 6 hours, the same requests but a few more ``/oncalls`` pages:
  ``workers.pagerduty.snapshot.read_snapshot(upcoming=...)``) once
  ``RRPD_UPCOMING_INTERVAL_SECONDS`` has passed since the last one, and on demand (sync now,
  binding, the first sync).
* **Store** (``apply_upcoming``, in the sync's apply transaction, under the rotations' row
  locks): one ``rotation_upcoming`` row per bound rotation. The first read after binding (or
  after a reconnect: another connection or generation) stores a baseline, no event.
* **Compare** (``workers.sync.upcoming_diff``): over the window both reads cover, per person;
  nothing changed: no event, and no write unless the stored window has slid by
  ``REBASE_AFTER`` (it must keep covering the days ahead). One event per rotation per read.

docs/sync-and-disconnect.md, "Upcoming shifts", has the reasons and the cost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Member, PagerDutyConnection, PagerDutyUser, RotationUpcoming
from workers import events
from workers.core.settings import get_settings
from workers.outbox.event_schema import timestamp
from workers.pagerduty.records import Timeline
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync.kinds import DIRECTORY_KINDS
from workers.sync.mirror import ApplyResult
from workers.sync.upcoming_diff import PersonChange, Span, Upcoming, decode, diff, encode, planned

# How far ahead the upcoming read looks (/oncalls accepts up to 90 days, facts file).
UPCOMING_HORIZON = timedelta(days=7)
# A stored plan with no change is rewritten once its window has slid this far, so that it keeps
# covering at least the next 6 days; in between a read that changes nothing writes nothing.
REBASE_AFTER = timedelta(days=1)


def upcoming_due(kind: str, read_at: datetime | None, now: datetime) -> bool:
    """The next directory read is the upcoming read: on demand, or once
    ``RRPD_UPCOMING_INTERVAL_SECONDS`` has passed since the last (``upcoming_read_at``)."""
    interval = timedelta(seconds=get_settings().upcoming_interval_seconds)
    return kind in DIRECTORY_KINDS or read_at is None or now - read_at >= interval


def plan_of(timelines: Sequence[Timeline], read_from: datetime, read_until: datetime) -> Upcoming:
    """The planned on-duty time of the union of ``timelines`` (merged per person)."""
    shifts = ((s.user.id, s.start, s.end) for timeline in timelines for s in timeline.shifts)
    return planned(shifts, read_from, read_until)


def apply_upcoming(
    session: Session,
    conn: PagerDutyConnection,
    snapshot: AccountSnapshot,
    rotations: Iterable[tuple[uuid.UUID, Sequence[str]]],
    member_of_user: Mapping[str, uuid.UUID],
    now: datetime,
    out: ApplyResult,
) -> None:
    """Store each bound rotation's upcoming plan from ``snapshot`` (an upcoming read) and
    publish ``rotation.upcoming_changed`` where it differs from the stored one. Rotations whose
    schedule could not be read keep their stored plan."""
    until = snapshot.upcoming_until
    if until is None:
        return
    # A rotation following several schedules plans the union of their shifts; it keeps its
    # stored plan unless every one of them was read.
    wanted = {
        rid: list(sids)
        for rid, sids in rotations
        if sids and all(s in snapshot.upcoming and s not in snapshot.unreadable for s in sids)
    }
    if not wanted:
        return
    stored = {
        row.rotation_id: row
        for row in session.scalars(
            select(RotationUpcoming).where(RotationUpcoming.rotation_id.in_(list(wanted)))
        )
    }
    for rid, sids in sorted(wanted.items()):
        sid = sids[0]  # the stored row and the event name the first (as ``schedule`` does)
        new = plan_of([snapshot.upcoming[s] for s in sids], snapshot.fetched_at, until)
        row = stored.get(rid)
        if row is None:
            session.add(RotationUpcoming(rotation_id=rid, **_columns(conn, sid, new, now)))
            out.created += 1
            continue
        if (row.connection_id, row.generation, row.schedule_id) != (conn.id, conn.generation, sid):
            _rewrite(row, conn, sid, new, now)  # a new binding or connection: a new baseline
            out.updated += 1
            continue
        old = decode(row.intervals, row.read_from, row.read_until)
        changes = diff(old, new)
        if changes:
            _publish(session, conn, rid, sids, old, new, changes, snapshot, member_of_user, now)
        if changes or new.read_from - old.read_from >= REBASE_AFTER:
            _rewrite(row, conn, sid, new, now)
            out.updated += 1


def _columns(conn: PagerDutyConnection, sid: str, plan: Upcoming, now: datetime) -> dict[str, Any]:
    return {
        "connection_id": conn.id,
        "generation": conn.generation,
        "schedule_id": sid,
        "read_from": plan.read_from,
        "read_until": plan.read_until,
        "intervals": encode(plan),
        "updated_at": now,
    }


def _rewrite(
    row: RotationUpcoming, conn: PagerDutyConnection, sid: str, plan: Upcoming, now: datetime
) -> None:
    for name, value in _columns(conn, sid, plan, now).items():
        setattr(row, name, value)


def _spans(spans: Sequence[Span]) -> list[dict[str, str]]:
    return [{"start": timestamp(start), "end": timestamp(end)} for start, end in spans]


def _publish(
    session: Session,
    conn: PagerDutyConnection,
    rotation_id: uuid.UUID,
    schedule_ids: Sequence[str],
    old: Upcoming,
    new: Upcoming,
    changes: Mapping[str, PersonChange],
    snapshot: AccountSnapshot,
    member_of_user: Mapping[str, uuid.UUID],
    now: datetime,
) -> None:
    """One ``rotation.upcoming_changed`` for this rotation: everyone whose time changed."""
    people = _people(session, conn, changes, snapshot, schedule_ids, member_of_user)
    events.rotation_upcoming_changed(
        session,
        workspace_id=conn.workspace_id,
        rotation_id=rotation_id,
        connection_id=conn.id,
        schedule_id=schedule_ids[0],
        schedule_ids=schedule_ids,
        window=(max(old.read_from, new.read_from), min(old.read_until, new.read_until)),
        people=[
            {
                **people[uid],
                "added": _spans(change.added),
                "removed": _spans(change.removed),
            }
            for uid, change in changes.items()
        ],
        occurred_at=now,
    )


def _people(
    session: Session,
    conn: PagerDutyConnection,
    uids: Iterable[str],
    snapshot: AccountSnapshot,
    schedule_ids: Sequence[str],
    member_of_user: Mapping[str, uuid.UUID],
) -> dict[str, dict[str, str | None]]:
    """Who each PagerDuty user is: the member matched by email (id, email, name), as the rest
    of the sync matches them; else PagerDuty's name (the read's, or the mirror's)."""
    wanted = set(uids)
    names = {
        s.user.id: s.user.name
        for sid in schedule_ids
        for s in snapshot.upcoming[sid].shifts
        if s.user.name
    }
    names.update((u.id, u.name) for u in snapshot.users if u.id in wanted and u.name)
    unnamed = [uid for uid in wanted if uid not in names]
    if unnamed:
        names.update(
            session.execute(
                select(PagerDutyUser.pagerduty_id, PagerDutyUser.name).where(
                    PagerDutyUser.connection_id == conn.id,
                    PagerDutyUser.pagerduty_id.in_(unnamed),
                )
            ).tuples()
        )
    matched = {uid: member_of_user[uid] for uid in wanted if uid in member_of_user}
    members: dict[uuid.UUID, tuple[str, str]] = {}
    if matched:
        rows = session.execute(
            select(Member.id, Member.email, Member.display_name).where(
                Member.id.in_(list(matched.values()))
            )
        )
        members = {mid: (email, name) for mid, email, name in rows}
    out: dict[str, dict[str, str | None]] = {}
    for uid in wanted:
        mid = matched.get(uid)
        email, name = members.get(mid, (None, None)) if mid is not None else (None, None)
        out[uid] = {
            "pagerduty_user_id": uid,
            "member_id": None if mid is None else str(mid),
            "email": email,
            "name": name or names.get(uid) or None,
        }
    return out

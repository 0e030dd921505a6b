"""The on-call history (``on_duty_intervals``): written beside the on-duty people it records.

``write_on_call`` calls ``record_people`` with who is on duty in each rotation it writes (the
members, and the PagerDuty users on call whom no member matches), in its own transaction and at
the instant the change took effect (a handoff's planned ``at``, the sync's ``now``). The open
intervals are diffed against them: a person who left has their interval ended, a newcomer gets
one opened, everyone else is not touched, so a write in which nothing changed writes nothing
(it costs one indexed SELECT). ``end_unmatched`` ends the PagerDuty users' intervals of rotations
made Manual: their members stay on duty (and their intervals open), the PagerDuty users who were
shown as ``unmatched_on_call`` are no longer anyone's on-call once the binding is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from models import Member, OnDutyInterval, PagerDutyUser

# A person: ("member", member id) or ("user", PagerDuty user id).
Person = tuple[str, str]


@dataclass(frozen=True)
class OnDuty:
    """Who is on duty in one rotation from ``now`` on."""

    members: Collection[uuid.UUID]
    users: Collection[str]  # PagerDuty user ids on call whom no member matches


def record_people(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    people: Mapping[uuid.UUID, OnDuty],
    now: datetime,
    source: str,
) -> int:
    """Make the open intervals of ``people``'s rotations name exactly those people from
    ``now``; returns how many rows were written."""
    if not people:
        return 0
    iv = OnDutyInterval
    open_rows = session.execute(
        select(iv.id, iv.rotation_id, iv.member_id, iv.pagerduty_user_id, iv.started_at).where(
            iv.rotation_id.in_(list(people)), iv.ended_at.is_(None)
        )
    ).all()
    have: dict[uuid.UUID, dict[Person, tuple[int, datetime]]] = {rid: {} for rid in people}
    strays: list[tuple[int, datetime]] = []  # open, naming nobody (their member was deleted)
    for row_id, rid, mid, uid, started in open_rows:
        if mid is not None:
            have[rid][("member", str(mid))] = (row_id, started)
        elif uid is not None:
            have[rid][("user", uid)] = (row_id, started)
        else:
            strays.append((row_id, started))
    ending = list(strays)
    opening: list[tuple[uuid.UUID, Person]] = []
    for rid, duty in people.items():
        want: set[Person] = {("member", str(m)) for m in duty.members}
        want |= {("user", u) for u in duty.users}
        ending += [kept for person, kept in have[rid].items() if person not in want]
        opening += [(rid, person) for person in want if person not in have[rid]]
    written = _end(session, ending, now)
    if opening:
        names = _names(session, connection_id, opening)
        session.execute(
            insert(iv),
            [
                {
                    "workspace_id": workspace_id,
                    "rotation_id": rid,
                    "member_id": uuid.UUID(key) if kind == "member" else None,
                    "pagerduty_user_id": key if kind == "user" else None,
                    "name": names.get((kind, key), (key, None))[0],
                    "email": names.get((kind, key), (key, None))[1],
                    "started_at": now,
                    "source": source,
                }
                for rid, (kind, key) in opening
            ],
        )
    return written + len(opening)


def end_unmatched(session: Session, rotation_ids: Collection[uuid.UUID], now: datetime) -> int:
    """End the open PagerDuty-user intervals of ``rotation_ids`` (made Manual) at ``now``."""
    if not rotation_ids:
        return 0
    iv = OnDutyInterval
    rows = session.execute(
        select(iv.id, iv.started_at).where(
            iv.rotation_id.in_(list(rotation_ids)),
            iv.ended_at.is_(None),
            iv.member_id.is_(None),
        )
    ).all()
    return _end(session, [(row_id, started) for row_id, started in rows], now)


def _end(session: Session, rows: list[tuple[int, datetime]], now: datetime) -> int:
    iv = OnDutyInterval
    ended = [row_id for row_id, started in rows if started <= now]
    # Opened by a write stamped later than this one (two writers' instants out of order):
    # on duty for no time at all, so it is dropped rather than given a negative length.
    dropped = [row_id for row_id, started in rows if started > now]
    if ended:
        session.execute(
            update(iv)
            .where(iv.id.in_(ended))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
    if dropped:
        session.execute(
            delete(iv).where(iv.id.in_(dropped)).execution_options(synchronize_session=False)
        )
    return len(rows)


def _names(
    session: Session, connection_id: uuid.UUID, opening: list[tuple[uuid.UUID, Person]]
) -> dict[Person, tuple[str, str | None]]:
    member_ids = {uuid.UUID(key) for _rid, (kind, key) in opening if kind == "member"}
    user_ids = {key for _rid, (kind, key) in opening if kind == "user"}
    names: dict[Person, tuple[str, str | None]] = {}
    if member_ids:
        rows: Any = session.execute(
            select(Member.id, Member.display_name, Member.email).where(Member.id.in_(member_ids))
        )
        names.update({("member", str(mid)): (name, email) for mid, name, email in rows})
    if user_ids:
        rows = session.execute(
            select(PagerDutyUser.pagerduty_id, PagerDutyUser.name, PagerDutyUser.email).where(
                PagerDutyUser.connection_id == connection_id,
                PagerDutyUser.pagerduty_id.in_(user_ids),
            )
        )
        names.update({("user", uid): (name, email) for uid, name, email in rows})
    return names

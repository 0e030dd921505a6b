"""One sync's view of a PagerDuty account, read in as few requests as PagerDuty's real API allows.

What is read, and why (docs/sync-and-disconnect.md has the request counts):

* **Users** (daily and on demand, ``read_users``; in between only the people bound schedules
  name whom the mirror lacks, one ``GET /users/{id}`` each): ``GET /users`` page by page when
  the account has at most 10,000 (PagerDuty refuses ``offset + limit > 10000``). The first
  page asks ``total=true``; past 10,000, or when the walk hits the cap, only the users that
  bound schedules reference are read (``/schedules/{id}/users`` for v2, ``/users/{id}`` for
  the rest). Either way the account's size never breaks a sync.
* **Schedules**: ``GET /schedules`` (v2: name, members, escalation policies) and
  ``GET /v3/schedules`` plus a detail per bound v3 schedule (members, on-call), per unbound one
  only with the user listing (daily). v3 is optional: a 400/402/403 keeps v2 syncing.
* **Who is on call**, for bound schedules only, never from the list (it does not render it,
  PagerDuty/api-schema#430): batched ``GET /oncalls?schedule_ids[]=...`` (v3 schedules too,
  since PagerDuty's 2026-03-18 schema) with a detail read (``GET /schedules/{id}?since&until``
  or the v3 detail) for every bound schedule ``/oncalls`` does not show (no escalation policy
  uses it, or nobody is on call) or when ``/oncalls`` is refused.
* **Deleted users** come back as inactive ``User``\\ s, never linkable, never a reason to fail.

``read_snapshot`` is the **directory read** (all of the above). ``read_check`` is the **on-call
check** run every interval in between: only who is on call for the bound schedules the mirror
knows (``/oncalls`` for all of them, over now only: workers.pagerduty.window; a detail for
those it did not show); members are the mirror's, no schedule list, no users.

Any read that fails for the whole account raises: nothing has been written yet. A failure that
concerns one bound schedule (gone, hidden) is recorded in ``unreadable`` and that rotation keeps
its last state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from workers.pagerduty import bulk
from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    NoApiAccess,
    NotFound,
    PagerDutyError,
)
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.oncall_read import SCHEDULE_GONE, SCHEDULE_HIDDEN, read_on_call, reason
from workers.pagerduty.parsing import whole_second
from workers.pagerduty.records import Schedule, Timeline, User, UserRef, V3ScheduleRef
from workers.pagerduty.snapshot_users import (
    KnownUsers,
    add_placeholders,
    new_people,
    read_all_users,
    read_referenced_users,
)
from workers.pagerduty.window import CHECK_WINDOW, StoredOnCall, narrow, stale

log = logging.getLogger(__name__)

# How far ahead each bound schedule's on-call is read (its handoffs are planned from it).
DEFAULT_HORIZON = timedelta(hours=6)

V3_UNAVAILABLE = (
    "PagerDuty refused to list this account's shift-based (v3) schedules ({reason}); layer-based "
    "schedules keep syncing, and rotations bound to v3 schedules keep their last state."
)


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything one sync needs. ``users_complete`` False: only referenced users were read."""

    fetched_at: datetime
    users: tuple[User, ...]
    users_complete: bool
    schedules: tuple[Schedule, ...]
    v3_listed: bool = True
    timelines: Mapping[str, Timeline] = field(default_factory=dict)
    # Schedules whose members could not be read this time (keep the mirrored ones).
    members_unknown: frozenset[str] = frozenset()
    # Bound schedules whose on-call could not be read, with the reason in plain words.
    unreadable: Mapping[str, str] = field(default_factory=dict)
    notices: tuple[str, ...] = ()
    requests_made: int = 0
    requests_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    # False for an on-call check: users and unbound v3 schedules were not read, so the mirror
    # (users, schedules, schedule members) must be left as it is (workers.sync.apply).
    directory_read: bool = True
    # False: the user directory was not listed (only new people, by id): the mirror keeps the
    # users it has and adds or updates these.
    users_read: bool = True
    # A check's bound schedules whose on-call now is what the stored timeline says (read for
    # one second only, workers.pagerduty.window): their stored on-call and handoffs stay.
    confirmed: frozenset[str] = frozenset()
    # Rows /oncalls gave each schedule at ``fetched_at``: how the next check packs its batches.
    oncall_rows: Mapping[str, int] = field(default_factory=dict)
    # The upcoming read (workers.sync.upcoming): bound schedules' timelines over
    # [fetched_at, upcoming_until), 7 days; ``timelines`` are the same cut to ``horizon``.
    upcoming: Mapping[str, Timeline] = field(default_factory=dict)
    upcoming_until: datetime | None = None

    def on_call(self, schedule_id: str, moment: datetime | None = None) -> tuple[UserRef, ...]:
        timeline = self.timelines.get(schedule_id)
        if timeline is None:
            return ()
        return timeline.on_call_at(moment or self.fetched_at)


def read_snapshot(
    reader: PagerDutyReader,
    *,
    bound: Iterable[str] = (),
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
    use_oncalls: bool = True,
    read_users: bool = True,
    known_users: KnownUsers | None = None,
    upcoming: timedelta | None = None,
) -> AccountSnapshot:
    """Read the directory, and who is on call over [now, now + horizon) for ``bound`` schedules.

    ``upcoming`` (the upcoming read, 7 days): the on-call is read over that longer window
    instead, in the same requests (a detail costs one whatever its window; ``/oncalls`` a few
    more pages), kept whole in ``AccountSnapshot.upcoming`` and cut to ``horizon`` in
    ``timelines`` (workers.pagerduty.window.narrow), which the handoff plan reads as before.

    ``read_users`` False (the user directory is read daily, workers.sync.run): no ``GET
    /users`` pages; only the people bound schedules name whom ``known_users`` (the mirror) does
    not have, or has as active while PagerDuty says deleted, are read, one ``GET /users/{id}``
    each."""
    span = _Span.over(now, max(horizon, upcoming or horizon))
    before = dict(reader.requests_by_endpoint)
    bound_ids = set(bound)
    users, complete = read_all_users(reader) if read_users else ({}, False)
    found = _Found(schedules={s.id: s for s in reader.list_schedules()}, users=users)
    v3 = _list_v3(reader)
    _add_v3(reader, found, v3.refs, span, bound_ids, read_users=read_users)
    _add_bound_v2_on_call(reader, found, bound_ids, span, use_oncalls)
    if not read_users:
        _add_new_people(reader, found, bound_ids, known_users)
    elif not complete:
        read_referenced_users(
            reader, found.schedules, bound_ids, found.timelines, found.unreadable, found.users
        )
    add_placeholders(
        found.schedules.values(), found.timelines.values(), found.users, complete=complete
    )
    delta = _requests_since(reader, before)
    cut = span.moment + max(horizon, timedelta(seconds=1))
    return AccountSnapshot(
        fetched_at=span.moment,
        users=tuple(found.users.values()),
        users_complete=complete,
        schedules=tuple(found.schedules.values()),
        v3_listed=v3.listed,
        timelines={sid: narrow(t, cut) for sid, t in found.timelines.items()},
        members_unknown=frozenset(found.members_unknown),
        unreadable=found.unreadable,
        notices=v3.notices,
        requests_made=sum(delta.values()),
        requests_by_endpoint=delta,
        users_read=read_users,
        oncall_rows=found.rows,
        upcoming=found.timelines if upcoming else {},
        upcoming_until=span.until if upcoming else None,
    )


@dataclass(frozen=True)
class _Span:
    """The second a read is for (``moment``) and the end of its window (``until``)."""

    moment: datetime
    until: datetime

    @classmethod
    def over(cls, now: datetime | None, horizon: timedelta) -> _Span:
        moment = whole_second(now)
        return cls(moment, moment + max(horizon, timedelta(seconds=1)))


@dataclass
class _Found:
    """What one read has found so far; each step adds to it, in the order it runs."""

    schedules: dict[str, Schedule]
    users: dict[str, User] = field(default_factory=dict)
    timelines: dict[str, Timeline] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    members_unknown: set[str] = field(default_factory=set)
    rows: dict[str, int] = field(default_factory=dict)


class _V3Listing(NamedTuple):
    # ``listed`` False: PagerDuty refused the list; ``notices`` then says why.
    listed: bool
    refs: list[V3ScheduleRef]
    notices: tuple[str, ...]


def _list_v3(reader: PagerDutyReader) -> _V3Listing:
    try:
        return _V3Listing(True, reader.list_v3_schedule_refs(), ())
    except (BadRequest, NoApiAccess, Forbidden, NotFound) as exc:
        # v3 may be gated by an ability or a scope nobody documents: v2 goes on regardless.
        return _V3Listing(False, [], (V3_UNAVAILABLE.format(reason=reason(exc)),))


def _add_v3(
    reader: PagerDutyReader,
    found: _Found,
    refs: list[V3ScheduleRef],
    span: _Span,
    bound_ids: set[str],
    *,
    read_users: bool,
) -> None:
    """One detail per v3 schedule read (bound ones; all with the users): members, on-call."""
    # Unbound schedules' members wait for the daily read (read_users).
    ids = [r.id for r in refs if read_users or r.id in bound_ids]
    details = bulk.v3_schedule_timelines(reader, ids, span.moment, span.until)
    for ref in refs:
        timeline = details.get(ref.id)
        if isinstance(timeline, NotFound):
            log.info("v3 schedule %s vanished during the sync", ref.id)
        elif isinstance(timeline, Timeline):
            # During an upgrade a schedule may show in both lists: v3 is the live one.
            found.schedules[ref.id] = Schedule(
                ref.id, timeline.name or ref.name, "v3", timeline.time_zone, timeline.members
            )
            if ref.id in bound_ids:
                found.timelines[ref.id] = timeline
        else:
            _keep_v3_members(found, ref, timeline, bound_ids)


def _keep_v3_members(
    found: _Found, ref: V3ScheduleRef, failure: BaseException | None, bound_ids: set[str]
) -> None:
    """Refused, or not read this time: the mirror keeps its members and time zone."""
    found.schedules[ref.id] = Schedule(ref.id, ref.name, "v3", None)
    found.members_unknown.add(ref.id)
    if ref.id in bound_ids and failure is not None:
        why = reason(failure) if isinstance(failure, PagerDutyError) else type(failure).__name__
        found.unreadable[ref.id] = f"{SCHEDULE_HIDDEN} ({why})"


def _add_bound_v2_on_call(
    reader: PagerDutyReader,
    found: _Found,
    bound_ids: set[str],
    span: _Span,
    use_oncalls: bool,
) -> None:
    """Bound v2 schedules' on-call (v3 ones have theirs from the detail already)."""
    schedules = found.schedules
    bound_v2 = sorted(s for s in bound_ids if s in schedules and schedules[s].version == "v2")
    oncall_users, gone = read_on_call(
        reader, schedules, bound_v2, span.moment, span.until, found.timelines, found.unreadable,
        use_oncalls, rows_seen=found.rows,
    )  # fmt: skip
    found.unreadable.update((sid, SCHEDULE_GONE) for sid in gone)
    for user in oncall_users.values():
        found.users.setdefault(user.id, user)


def _add_new_people(
    reader: PagerDutyReader,
    found: _Found,
    bound_ids: set[str],
    known_users: KnownUsers | None,
) -> None:
    """Between daily reads: only the people the mirror lacks (or has active though deleted)."""
    new = new_people(found.schedules, bound_ids, found.timelines, found.users, known_users)
    for uid, user in bulk.users_by_id(reader, new).items():
        found.users[uid] = user if user is not None else User(uid, "", None, active=False)


def _requests_since(reader: PagerDutyReader, before: Mapping[str, int]) -> dict[str, int]:
    """The requests made per endpoint since ``before`` (endpoints with none left out)."""
    after = reader.requests_by_endpoint
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def read_check(
    reader: PagerDutyReader,
    *,
    known: Iterable[Schedule],
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
    use_oncalls: bool = True,
    stored: StoredOnCall | None = None,
    rows_hint: Mapping[str, int] | None = None,
) -> AccountSnapshot:
    """The on-call check: who is on call over [now, now + horizon) for the bound schedules the
    mirror ``known``\\s (their version and members, as the last directory read left them).

    ``/oncalls`` for all of them, v2 and v3 alike (PagerDuty's 2026-03-18 schema), then a detail
    only for those it did not show: no policy uses them, nobody is on call, or ``/oncalls`` left
    v3 out after all (facts file). With ``stored``, ``/oncalls`` is asked about now only, and the
    window again only where the stored timeline is wrong now (workers.pagerduty.window); a
    detail costs one request whatever its window: it reads the whole one. A bound schedule
    whose detail answers 404 is left out of ``schedules``, which the caller takes as "read the
    directory" (it says whether the schedule is gone or moved to the other version)."""
    span = _Span.over(now, horizon)
    before = dict(reader.requests_by_endpoint)
    found = _Found(schedules={s.id: s for s in known})
    gone = _check_on_call(reader, found, span, use_oncalls, stored=stored, rows_hint=rows_hint)
    recheck = _reread_stale(reader, found, span, use_oncalls, stored)
    for sid in gone + recheck.gone:
        del found.schedules[sid]
    delta = _requests_since(reader, before)
    return AccountSnapshot(
        fetched_at=span.moment,
        users=tuple(found.users.values()),
        users_complete=False,
        schedules=tuple(found.schedules.values()),
        timelines=found.timelines,
        unreadable=found.unreadable,
        requests_made=sum(delta.values()),
        requests_by_endpoint=delta,
        directory_read=False,
        users_read=False,
        confirmed=recheck.confirmed,
        oncall_rows=found.rows,
    )


class _Recheck(NamedTuple):
    # Schedules whose stored on-call is right now, and those whose detail answered 404.
    confirmed: frozenset[str]
    gone: list[str]


def _check_on_call(
    reader: PagerDutyReader,
    found: _Found,
    span: _Span,
    use_oncalls: bool,
    *,
    stored: StoredOnCall | None,
    rows_hint: Mapping[str, int] | None,
) -> list[str]:
    """Every known schedule's on-call; returns those whose detail answered 404."""
    # With a stored timeline, /oncalls over now only: _reread_stale reads the window if wrong.
    oncalls_until = span.until if stored is None else span.moment + CHECK_WINDOW
    users, gone = read_on_call(
        reader, found.schedules, sorted(found.schedules), span.moment, oncalls_until,
        found.timelines, found.unreadable, use_oncalls, detail_until=span.until,
        rows_hint=rows_hint, rows_seen=found.rows,
    )  # fmt: skip
    found.users.update(users)
    return gone


def _reread_stale(
    reader: PagerDutyReader,
    found: _Found,
    span: _Span,
    use_oncalls: bool,
    stored: StoredOnCall | None,
) -> _Recheck:
    """Of the schedules read over now only, confirm those the stored timeline has right now
    and read the whole window again for the rest."""
    now_only = [sid for sid, t in found.timelines.items() if t.until < span.until]
    if stored is None or not now_only:
        return _Recheck(frozenset(), [])
    again = stale(found.timelines, now_only, stored(now_only, span.moment), span.moment)
    for sid in again:  # read again: the detail answers where /oncalls shows nobody
        del found.timelines[sid]
    more, gone = read_on_call(
        reader, found.schedules, again, span.moment, span.until, found.timelines,
        found.unreadable, use_oncalls, rows_seen=found.rows,
    )  # fmt: skip
    found.users.update(more)
    return _Recheck(frozenset(now_only) - set(again), gone)


def referenced_users(snapshot: AccountSnapshot) -> dict[str, UserRef]:
    """Every person the bound schedules name (members, on call in the window), by id."""
    refs: dict[str, UserRef] = {}
    for schedule in snapshot.schedules:
        for ref in schedule.members:
            refs.setdefault(ref.id, ref)
    for timeline in snapshot.timelines.values():
        for ref in (*timeline.members, *(s.user for s in timeline.shifts)):
            refs.setdefault(ref.id, ref)
    return refs

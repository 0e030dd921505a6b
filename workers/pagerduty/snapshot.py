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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workers.pagerduty import bulk
from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    NoApiAccess,
    NotFound,
    PagerDutyError,
    PaginationLimit,
)
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.oncall_read import SCHEDULE_GONE, SCHEDULE_HIDDEN, read_on_call, reason
from workers.pagerduty.parsing import whole_second
from workers.pagerduty.records import Schedule, Timeline, User, UserRef
from workers.pagerduty.transport import MAX_OFFSET_WINDOW, PAGE_LIMIT
from workers.pagerduty.window import CHECK_WINDOW, StoredOnCall, stale

log = logging.getLogger(__name__)

# Which of these PagerDuty user ids the mirror has (id -> active): the caller's lookup.
KnownUsers = Callable[[Collection[str]], Mapping[str, bool]]

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
) -> AccountSnapshot:
    """Read the directory, and who is on call over [now, now + horizon) for ``bound`` schedules.

    ``read_users`` False (the user directory is read daily, workers.sync.run): no ``GET
    /users`` pages; only the people bound schedules name whom ``known_users`` (the mirror) does
    not have, or has as active while PagerDuty says deleted, are read, one ``GET /users/{id}``
    each."""
    moment = whole_second(now)
    until = moment + max(horizon, timedelta(seconds=1))
    before = dict(reader.requests_by_endpoint)
    bound_ids = set(bound)
    notices: list[str] = []

    users, complete = _read_users(reader) if read_users else ({}, False)
    schedules: dict[str, Schedule] = {s.id: s for s in reader.list_schedules()}
    timelines: dict[str, Timeline] = {}
    unreadable: dict[str, str] = {}
    members_unknown: set[str] = set()

    v3_listed = True
    try:
        v3_refs = reader.list_v3_schedule_refs()
    except (BadRequest, NoApiAccess, Forbidden, NotFound) as exc:
        # v3 may be gated by an ability or a scope nobody documents: v2 goes on regardless.
        v3_listed, v3_refs = False, []
        notices.append(V3_UNAVAILABLE.format(reason=reason(exc)))
    # One detail per v3 schedule: unbound ones' members wait for the daily read (read_users).
    v3_read = [r.id for r in v3_refs if read_users or r.id in bound_ids]
    v3_details = bulk.v3_schedule_timelines(reader, v3_read, moment, until)
    for ref in v3_refs:
        timeline = v3_details.get(ref.id)
        if isinstance(timeline, NotFound):
            log.info("v3 schedule %s vanished during the sync", ref.id)
            continue
        if not isinstance(timeline, Timeline):
            # Refused, or not read this time: the mirror keeps its members and time zone.
            schedules[ref.id] = Schedule(ref.id, ref.name, "v3", None)
            members_unknown.add(ref.id)
            if ref.id in bound_ids and timeline is not None:
                why = (
                    reason(timeline)
                    if isinstance(timeline, PagerDutyError)
                    else type(timeline).__name__
                )
                unreadable[ref.id] = f"{SCHEDULE_HIDDEN} ({why})"
            continue
        # During an upgrade a schedule may show in both lists: v3 is the live one.
        schedules[ref.id] = Schedule(
            ref.id, timeline.name or ref.name, "v3", timeline.time_zone, timeline.members
        )
        if ref.id in bound_ids:
            timelines[ref.id] = timeline

    bound_v2 = sorted(s for s in bound_ids if s in schedules and schedules[s].version == "v2")
    rows: dict[str, int] = {}
    oncall_users, gone = read_on_call(
        reader, schedules, bound_v2, moment, until, timelines, unreadable, use_oncalls,
        rows_seen=rows,
    )  # fmt: skip
    unreadable.update((sid, SCHEDULE_GONE) for sid in gone)
    for user in oncall_users.values():
        users.setdefault(user.id, user)

    if not read_users:
        new = _new_people(schedules, bound_ids, timelines, users, known_users)
        for uid, found in bulk.users_by_id(reader, new).items():
            users[uid] = found if found is not None else User(uid, "", None, active=False)
    elif not complete:
        _read_referenced_users(reader, schedules, bound_ids, timelines, unreadable, users)
    _add_placeholders(schedules.values(), timelines.values(), users, complete=complete)

    after = reader.requests_by_endpoint
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return AccountSnapshot(
        fetched_at=moment,
        users=tuple(users.values()),
        users_complete=complete,
        schedules=tuple(schedules.values()),
        v3_listed=v3_listed,
        timelines=timelines,
        members_unknown=frozenset(members_unknown),
        unreadable=unreadable,
        notices=tuple(notices),
        requests_made=sum(delta.values()),
        requests_by_endpoint=delta,
        users_read=read_users,
        oncall_rows=rows,
    )


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
    moment = whole_second(now)
    until = moment + max(horizon, timedelta(seconds=1))
    before = dict(reader.requests_by_endpoint)
    schedules = {s.id: s for s in known}
    timelines: dict[str, Timeline] = {}
    unreadable: dict[str, str] = {}
    oncalls_until = until if stored is None else moment + CHECK_WINDOW
    rows: dict[str, int] = {}
    users, gone = read_on_call(
        reader, schedules, sorted(schedules), moment, oncalls_until, timelines, unreadable,
        use_oncalls, detail_until=until, rows_hint=rows_hint, rows_seen=rows,
    )  # fmt: skip
    now_only = [sid for sid, t in timelines.items() if t.until < until]
    confirmed: frozenset[str] = frozenset()
    if stored is not None and now_only:
        again = stale(timelines, now_only, stored(now_only, moment), moment)
        confirmed = frozenset(now_only) - set(again)
        for sid in again:  # read again: the detail answers where /oncalls shows nobody
            del timelines[sid]
        more, also_gone = read_on_call(
            reader, schedules, again, moment, until, timelines, unreadable, use_oncalls,
            rows_seen=rows,
        )  # fmt: skip
        users.update(more)
        gone += also_gone
    for sid in gone:
        del schedules[sid]
    after = reader.requests_by_endpoint
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return AccountSnapshot(
        fetched_at=moment,
        users=tuple(users.values()),
        users_complete=False,
        schedules=tuple(schedules.values()),
        timelines=timelines,
        unreadable=unreadable,
        requests_made=sum(delta.values()),
        requests_by_endpoint=delta,
        directory_read=False,
        users_read=False,
        confirmed=confirmed,
        oncall_rows=rows,
    )


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


def _new_people(
    schedules: Mapping[str, Schedule],
    bound_ids: set[str],
    timelines: Mapping[str, Timeline],
    users: Mapping[str, User],
    known_users: KnownUsers | None,
) -> list[str]:
    """The people bound schedules name (members, on call) that only ``GET /users/{id}`` can
    tell about: not in the mirror, or still active there though PagerDuty says deleted."""
    refs: dict[str, UserRef] = {}
    for sid in sorted(bound_ids):
        if sid in schedules:
            for ref in schedules[sid].members:
                refs.setdefault(ref.id, ref)
        if sid in timelines:
            for ref in (*timelines[sid].members, *(s.user for s in timelines[sid].shifts)):
                refs.setdefault(ref.id, ref)
    asked = [uid for uid in refs if uid not in users]
    known = known_users(asked) if known_users is not None and asked else {}
    return [uid for uid in asked if uid not in known or (refs[uid].deleted and known[uid])]


def _read_users(reader: PagerDutyReader) -> tuple[dict[str, User], bool]:
    """Every user when PagerDuty can list them all; else (False) the first page only."""
    first = reader.users_page(offset=0, limit=PAGE_LIMIT, total=True)
    users = {u.id: u for u in first.users}
    if not first.more:
        return users, True
    if first.total is not None and first.total > MAX_OFFSET_WINDOW:
        return users, False
    try:
        rest = bulk.users_after(reader, first)
    except PaginationLimit:
        # PagerDuty ignored total=true and the account is past the cap.
        return users, False
    for user in rest:
        users.setdefault(user.id, user)
    return users, True


def _read_referenced_users(
    reader: PagerDutyReader,
    schedules: Mapping[str, Schedule],
    bound_ids: set[str],
    timelines: Mapping[str, Timeline],
    unreadable: Mapping[str, str],
    users: dict[str, User],
) -> None:
    """Past 10,000 users: read only the members and on-call people of bound schedules."""
    needed: set[str] = set()
    for sid in bound_ids:
        if sid in schedules:
            needed.update(schedules[sid].member_user_ids)
        if sid in timelines:
            needed.update(s.user.id for s in timelines[sid].shifts)
    # One request for every user on the schedule, emails included.
    lacking = [
        sid
        for sid in sorted(bound_ids)
        if (schedule := schedules.get(sid)) is not None
        and schedule.version == "v2"
        and sid not in unreadable
        and any(uid not in users for uid in schedule.member_user_ids)
    ]
    for listed in bulk.schedules_users(reader, lacking):
        for user in listed:
            users.setdefault(user.id, user)
    for uid, found in bulk.users_by_id(reader, sorted(needed - users.keys())).items():
        users[uid] = found if found is not None else User(uid, "", None, active=False)


def _add_placeholders(
    schedules: Iterable[Schedule],
    timelines: Iterable[Timeline],
    users: dict[str, User],
    *,
    complete: bool,
) -> None:
    """Deleted users that schedules still name become inactive users, with the name the
    reference carries. With the full listing, anyone it lacks is deleted; with referenced users
    only, a reference must say so itself (``deleted_at``). A live user always wins."""
    refs: dict[str, UserRef] = {}
    for schedule in schedules:
        for ref in schedule.members:
            refs.setdefault(ref.id, ref)
    for timeline in timelines:
        for ref in (*timeline.members, *(s.user for s in timeline.shifts)):
            refs.setdefault(ref.id, ref)
    for uid, ref in refs.items():
        if uid not in users and (complete or ref.deleted):
            users[uid] = User(uid, ref.name or "", None, active=False)

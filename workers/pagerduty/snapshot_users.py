"""The users side of a directory read (workers.pagerduty.snapshot): the whole listing when
PagerDuty allows it, else only the people bound schedules name, and inactive placeholders for
the deleted ones. Kept apart so that snapshot.py stays readable and under the layout's limit."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from workers.pagerduty import bulk
from workers.pagerduty.errors import PaginationLimit
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Schedule, Timeline, User, UserRef
from workers.pagerduty.transport import MAX_OFFSET_WINDOW, PAGE_LIMIT

# Which of these PagerDuty user ids the mirror has (id -> active): the caller's lookup.
KnownUsers = Callable[[Collection[str]], Mapping[str, bool]]


def new_people(
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


def read_all_users(reader: PagerDutyReader) -> tuple[dict[str, User], bool]:
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


def read_referenced_users(
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


def add_placeholders(
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

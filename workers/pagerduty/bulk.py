"""Independent PagerDuty reads in bulk: several in flight at once when the reader can.

The snapshot calls these instead of looping over one-at-a-time reads. A reader with
``map_concurrent`` (``PagerDutyClient``: up to ``max_in_flight`` requests per credential, paced
by the shared limiter) runs them concurrently; any other ``PagerDutyReader`` (a scripted test
reader) runs the same loop sequentially. Either way the errors mean what they meant in the loop:
an error that concerns one schedule (``PER_SCHEDULE``) comes back in that schedule's place, any
other one is raised and the reads not yet started are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from workers.pagerduty.errors import BadRequest, Forbidden, NoApiAccess, NotFound
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Timeline, User, UsersPage
from workers.pagerduty.transport import MAX_OFFSET_WINDOW, PAGE_LIMIT, page_offsets

T = TypeVar("T")
R = TypeVar("R")

# Errors that concern one schedule (gone, hidden, refused): recorded per schedule.
PER_SCHEDULE: tuple[type[Exception], ...] = (NotFound, Forbidden, BadRequest, NoApiAccess)


def _map(
    reader: PagerDutyReader,
    fn: Callable[[T], R],
    items: Iterable[T],
    per_item: tuple[type[BaseException], ...] = (),
) -> list[R | BaseException]:
    concurrent = getattr(reader, "map_concurrent", None)
    if concurrent is not None:
        out: list[R | BaseException] = concurrent(fn, items, per_item=per_item)
        return out
    results: list[R | BaseException] = []
    for item in items:
        try:
            results.append(fn(item))
        except per_item as exc:
            results.append(exc)
    return results


def schedule_timelines(
    reader: PagerDutyReader, ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, Timeline | BaseException]:
    """Each v2 schedule's detail over [since, until), or its per-schedule error."""
    got = _map(reader, lambda sid: reader.schedule_timeline(sid, since, until), ids, PER_SCHEDULE)
    return dict(zip(ids, got, strict=True))


def v3_schedule_timelines(
    reader: PagerDutyReader, ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, Timeline | BaseException]:
    """Each v3 schedule's detail over [since, until), or its per-schedule error."""
    got = _map(
        reader, lambda sid: reader.v3_schedule_timeline(sid, since, until), ids, PER_SCHEDULE
    )
    return dict(zip(ids, got, strict=True))


def schedules_users(reader: PagerDutyReader, ids: Sequence[str]) -> list[list[User]]:
    """Every user of each schedule (any error raised, as in the loop)."""
    return [r for r in _map(reader, reader.schedule_users, ids) if isinstance(r, list)]


def users_by_id(reader: PagerDutyReader, ids: Sequence[str]) -> dict[str, User | None]:
    """Each user, None for one PagerDuty no longer has."""
    got = _map(reader, reader.get_user, ids)
    return {uid: u for uid, u in zip(ids, got, strict=True) if not isinstance(u, BaseException)}


def users_after(reader: PagerDutyReader, first: UsersPage) -> list[User]:
    """The users after ``first`` (asked with ``total=true``): the remaining pages concurrently
    when the total is known and inside PagerDuty's window, else the sequential walk
    (``list_users``, which raises PaginationLimit at the cap). Pages that stop being
    contiguous (a short page, a total that grew) are finished by the walk from there."""
    offset = len(first.users)
    total = first.total
    if getattr(reader, "map_concurrent", None) is None or total is None:
        return reader.list_users(offset=offset)
    if total > MAX_OFFSET_WINDOW:
        return reader.list_users(offset=offset)
    pages = page_offsets(offset, total, PAGE_LIMIT)
    got: list[Any] = _map(reader, lambda p: reader.users_page(offset=p[0], limit=p[1]), pages)
    users: list[User] = []
    for (page_offset, _), page in zip(pages, got, strict=True):
        if page_offset != offset:
            break
        users.extend(page.users)
        offset += len(page.users)
        if not page.more:
            return users
    return users + reader.list_users(offset=offset)

"""Who is on call for bound schedules: ``/oncalls`` in batches, a schedule's detail for the rest.

``/oncalls`` (v2 and v3 alike since PagerDuty's 2026-03-18 schema) answers a row per schedule,
escalation policy, level and shift; a schedule no policy uses is absent, and so is one nobody is
on call for: their detail answers (``GET /schedules/{id}?since&until`` or the v3 detail, one
request each). With ``rows_hint`` (rows each schedule gave at the last read's instant) the
schedules are packed so that a batch's rows fit one page (workers.pagerduty.window.pack).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from workers.pagerduty import bulk
from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    NoApiAccess,
    NotFound,
    PagerDutyError,
    RateLimited,
)
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.records import Schedule, Shift, Timeline, User
from workers.pagerduty.window import pack

log = logging.getLogger(__name__)

SCHEDULE_GONE = "PagerDuty says this schedule no longer exists"
SCHEDULE_HIDDEN = "PagerDuty does not let this connection read this schedule"


def reason(exc: PagerDutyError) -> str:
    return f"HTTP {exc.status}" if exc.status else type(exc).__name__


def _oncalls(
    reader: PagerDutyReader,
    ids: Sequence[str],
    since: datetime,
    until: datetime,
    rows_hint: Mapping[str, int] | None,
) -> tuple[list[Shift], dict[str, User], dict[str, int]]:
    """/oncalls for ``ids``, packed by ``rows_hint`` when given; with the rows each schedule
    had at ``since`` when the reader counts them (``PagerDutyClient.oncalls_counted``)."""
    counted = getattr(reader, "oncalls_counted", None)
    if counted is None:
        shifts, users = reader.oncalls(ids, since, until)
        return shifts, users, {}
    batches = [list(ids)] if rows_hint is None else pack(ids, rows_hint)
    found: tuple[list[Shift], dict[str, User], dict[str, int]] = counted(batches, since, until)
    return found


def read_on_call(
    reader: PagerDutyReader,
    schedules: Mapping[str, Schedule],
    ids: list[str],
    since: datetime,
    until: datetime,
    timelines: dict[str, Timeline],
    unreadable: dict[str, str],
    use_oncalls: bool,
    detail_until: datetime | None = None,
    rows_hint: Mapping[str, int] | None = None,
    rows_seen: dict[str, int] | None = None,
) -> tuple[dict[str, User], list[str]]:
    """Timelines of ``ids`` (v2 or v3): /oncalls in batches, the detail (over [since,
    ``detail_until`` or ``until``)) for the rest. Returns the users /oncalls embedded and the
    schedules whose detail answered 404 (gone); ``rows_seen`` gets the rows each schedule had
    at ``since``."""
    users: dict[str, User] = {}
    via_detail = list(ids)
    # A schedule no escalation policy uses never appears in /oncalls: go straight to its
    # detail. ``None`` (the mirror does not keep policies): ask /oncalls, the detail follows.
    in_policies = [s for s in ids if schedules[s].escalation_policy_ids != ()]
    if use_oncalls and in_policies:
        try:
            shifts, users, rows = _oncalls(reader, in_policies, since, until, rows_hint)
        except (Forbidden, NoApiAccess, BadRequest, RateLimited) as exc:
            # No oncalls.read scope, an ability, or /oncalls' own rate limit: the detail of
            # each schedule answers the same question, one request each.
            log.info("GET /oncalls unavailable (%s); reading schedule details", reason(exc))
        else:
            if rows_seen is not None:
                rows_seen.update(rows)
            by_schedule: dict[str, list[Shift]] = {}
            for shift in shifts:
                by_schedule.setdefault(shift.schedule_id, []).append(shift)
            for sid, found in by_schedule.items():
                if sid in schedules:
                    timelines[sid] = Timeline(
                        sid, since, until, tuple(found), members=schedules[sid].members
                    )
            # Absent: nobody on call in the window, or /oncalls filtered it; the detail knows.
            via_detail = [s for s in ids if s not in timelines]
    v2 = [s for s in via_detail if schedules[s].version != "v3"]
    v3 = [s for s in via_detail if s not in v2]
    until = detail_until or until
    got = bulk.schedule_timelines(reader, v2, since, until)
    got.update(bulk.v3_schedule_timelines(reader, v3, since, until))
    gone: list[str] = []
    for sid, detail in got.items():
        if isinstance(detail, NotFound):
            gone.append(sid)
        elif isinstance(detail, PagerDutyError):
            unreadable[sid] = f"{SCHEDULE_HIDDEN} ({reason(detail)})"
        elif isinstance(detail, Timeline):
            timelines[sid] = detail
    return users, gone

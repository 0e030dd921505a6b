"""The on-call check reads "now"; the handoff timeline is read on the directory cadence.

``/oncalls`` answers with a row per (schedule, escalation policy, level, shift) in the window: a
6-hour window gave ~220 rows per 100 schedules, 3 pages a batch. The check therefore asks
``/oncalls`` about one second (``CHECK_WINDOW``, whole seconds: PagerDuty renders nothing for
bounds a few microseconds apart) and compares who it finds on call with what the stored timeline
says for that instant (``stored``: the on-call mirror, or the latest due handoff not applied
yet). Where they agree the stored on-call and handoff plan stay as they are (``confirmed``);
where they differ (an override, an edit: the stored future is stale too) the 6-hour window of
those schedules is read again in the same check, and re-planned as before. The directory read
(``RRPD_DIRECTORY_INTERVAL_SECONDS``) always reads the whole window for every bound schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from workers.pagerduty.records import Timeline

# One second of /oncalls: about one row per schedule and policy level, whatever the shifts.
CHECK_WINDOW = timedelta(seconds=1)

# Who the stored timeline has on call at an instant, per schedule (PagerDuty user ids): the
# caller's lookup (workers.handoffs.plan.read_stored_on_call).
StoredOnCall = Callable[[Collection[str], datetime], Mapping[str, frozenset[str]]]

# A schedule /oncalls has no count for yet (new, or never answered over an instant): about what
# the large account's average is (1.4 rows a schedule), rounded up.
UNKNOWN_ROWS = 2

# Ids the mirror can hold (pagerduty_oncalls.user_pagerduty_id): longer ones are never stored.
MAX_ID = 64


def on_call_ids(timeline: Timeline, moment: datetime) -> frozenset[str]:
    """Who ``timeline`` has on call at ``moment``, as the mirror would hold them."""
    return frozenset(u.id for u in timeline.on_call_at(moment) if u.id and len(u.id) <= MAX_ID)


def stale(
    timelines: Mapping[str, Timeline],
    ids: Iterable[str],
    stored: Mapping[str, frozenset[str]],
    moment: datetime,
) -> list[str]:
    """The schedules of ``ids`` whose on-call at ``moment`` is not what the stored timeline
    says (no stored row: nobody), in id order: their window must be read again."""
    return sorted(
        sid for sid in ids if on_call_ids(timelines[sid], moment) != stored.get(sid, frozenset())
    )


def pack(
    ids: Sequence[str], rows: Mapping[str, int], *, page: int = 100, most: int = 100
) -> list[list[str]]:
    """``/oncalls`` batches of at most ``most`` ids whose expected rows (``rows``: what each
    schedule gave at the last read's instant) fit ``page`` where they can: first fit by
    decreasing rows. A batch that overflows costs a second page, never a row."""
    order = sorted(ids, key=lambda sid: (-rows.get(sid, UNKNOWN_ROWS), sid))
    batches: list[list[str]] = []
    load: list[int] = []
    for sid in order:
        weight = rows.get(sid, UNKNOWN_ROWS)
        for i, batch in enumerate(batches):
            if load[i] + weight <= page and len(batch) < most:
                batch.append(sid)
                load[i] += weight
                break
        else:
            batches.append([sid])
            load.append(weight)
    return batches


def narrow(timeline: Timeline, until: datetime) -> Timeline:
    """``timeline`` as a read over ``[timeline.since, until)`` renders it: the shifts that meet
    that window, with their true extents (every read asks ``overflow=true``; ``/oncalls``
    gives true extents anyway). The upcoming read (7 days) thus serves the 6-hour handoff plan
    too, with the shifts a 6-hour read would have stored: no rewrite when the two alternate."""
    if until >= timeline.until:
        return timeline
    shifts = tuple(
        s
        for s in timeline.shifts
        if (s.start is None or s.start < until) and (s.end is None or s.end > timeline.since)
    )
    return replace(timeline, until=until, shifts=shifts)

"""Schedule computation: who is on call, rendered on demand for the window asked about.

Nothing is precomputed: every call works out the rotation turns that touch the requested window,
so a schedule whose virtual start is years ago costs the same as a brand-new one.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .rrule import occurrences
from .scenario import Layer, Override, Restriction, Schedule, V3Event

MAX_OVERFLOW = timedelta(days=366)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    user_id: str | None
    # layer | override (v2) | rotation | custom_shift | rotation_override | custom_shift_override
    source: str = "layer"
    source_id: str = ""
    target: str = ""  # v3 overrides: the rotation / custom shift they replace a member of


# --------------------------------------------------------------------------- v2 layers


def _restriction_windows(
    restrictions: list[Restriction], tz: ZoneInfo, since: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """On-duty windows allowed by the restrictions (union), in absolute time."""
    out: list[tuple[datetime, datetime]] = []
    day = (since.astimezone(tz) - timedelta(days=8)).date()
    last = until.astimezone(tz).date()
    while day <= last:
        for r in restrictions:
            if r.type == "weekly_restriction" and day.isoweekday() != r.start_day_of_week:
                continue
            h, m, s = (int(x) for x in r.start_time_of_day.split(":"))
            ws = datetime.combine(day, time(h, m, s), tzinfo=tz)
            we = ws + timedelta(seconds=r.duration_seconds)
            if we > since and ws < until:
                out.append((ws, we))
        day += timedelta(days=1)
    out.sort()
    merged: list[tuple[datetime, datetime]] = []
    for s, e in out:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def layer_entries(layer: Layer, tz_name: str, since: datetime, until: datetime) -> list[Segment]:
    """Rotation turns of one layer clipped to [since, until) and to the layer's start/end."""
    lo = max(since, layer.start)
    hi = until if layer.end is None else min(until, layer.end)
    if lo >= hi:
        return []
    turn = layer.rotation_turn_length_seconds
    vstart = layer.rotation_virtual_start
    n = len(layer.users)
    k = math.floor((lo - vstart).total_seconds() / turn)
    out: list[Segment] = []
    while True:
        ts = vstart + timedelta(seconds=k * turn)
        te = ts + timedelta(seconds=turn)
        s, e = max(ts, lo), min(te, hi)
        if s >= hi:
            break
        if s < e:
            out.append(Segment(s, e, layer.users[k % n], "layer", layer.id))
        k += 1
    if layer.restrictions:
        windows = _restriction_windows(layer.restrictions, zone(tz_name), lo, hi)
        cut: list[Segment] = []
        for seg in out:
            for ws, we in windows:
                s, e = max(seg.start, ws), min(seg.end, we)
                if s < e:
                    cut.append(Segment(s, e, seg.user_id, "layer", layer.id))
        out = cut
    return out


def _covering(entries: list[Segment], starts: list[datetime], t: datetime) -> Segment | None:
    i = bisect_right(starts, t) - 1
    if i >= 0 and entries[i].end > t:
        return entries[i]
    return None


def final_segments(schedule: Schedule, since: datetime, until: datetime) -> list[Segment]:
    """Unmerged final schedule: overrides beat layers, later layers beat earlier ones."""
    if since >= until:
        return []
    per_layer = [
        layer_entries(layer, schedule.time_zone, since, until) for layer in schedule.layers
    ]
    overrides = [
        Segment(max(o.start, since), min(o.end, until), o.user_id, "override", o.id)
        for o in schedule.overrides
        if o.start < until and o.end > since
    ]
    points = {since, until}
    for entries in per_layer:
        for seg in entries:
            points.add(seg.start)
            points.add(seg.end)
    for seg in overrides:
        points.add(seg.start)
        points.add(seg.end)
    bounds = sorted(p for p in points if since <= p <= until)
    starts = [[seg.start for seg in entries] for entries in per_layer]
    out: list[Segment] = []
    for a, b in itertools.pairwise(bounds):
        winner: Segment | None = None
        for ov in reversed(overrides):  # the most recently added override wins
            if ov.start <= a < ov.end:
                winner = ov
                break
        if winner is None:
            for idx in range(len(per_layer) - 1, -1, -1):
                winner = _covering(per_layer[idx], starts[idx], a)
                if winner is not None:
                    break
        if winner is None:
            continue
        if (
            out
            and out[-1].end == a
            and out[-1].user_id == winner.user_id
            and (out[-1].source_id == winner.source_id)
        ):
            out[-1] = Segment(out[-1].start, b, winner.user_id, winner.source, winner.source_id)
        else:
            out.append(Segment(a, b, winner.user_id, winner.source, winner.source_id))
    return out


def merge_by_user(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segs:
        if out and out[-1].end == seg.start and out[-1].user_id == seg.user_id:
            out[-1] = Segment(
                out[-1].start, seg.end, seg.user_id, out[-1].source, out[-1].source_id
            )
        else:
            out.append(seg)
    return out


def _overflow_step(schedule: Schedule) -> timedelta:
    turns = [layer.rotation_turn_length_seconds for layer in schedule.layers] or [86400]
    return timedelta(seconds=max(3600, *turns))


def final_entries(
    schedule: Schedule, since: datetime, until: datetime, *, overflow: bool = False
) -> list[Segment]:
    """Merged final schedule for the window; with overflow, edge entries keep their true extent."""
    segs = merge_by_user(final_segments(schedule, since, until))
    if not overflow or not segs:
        return segs
    step = _overflow_step(schedule)
    lo = since
    while segs[0].start == lo and since - lo < MAX_OVERFLOW:
        prev = merge_by_user(final_segments(schedule, lo - step, lo))
        if not prev or prev[-1].end != lo or prev[-1].user_id != segs[0].user_id:
            break
        segs[0] = Segment(
            prev[-1].start, segs[0].end, segs[0].user_id, segs[0].source, segs[0].source_id
        )
        lo = lo - step
    hi = until
    while segs[-1].end == hi and hi - until < MAX_OVERFLOW:
        nxt = merge_by_user(final_segments(schedule, hi, hi + step))
        if not nxt or nxt[0].start != hi or nxt[0].user_id != segs[-1].user_id:
            break
        segs[-1] = Segment(
            segs[-1].start, nxt[0].end, segs[-1].user_id, segs[-1].source, segs[-1].source_id
        )
        hi = hi + step
    return segs


def coverage_percentage(segs: list[Segment], since: datetime, until: datetime) -> float:
    """Share of the window covered by at least one segment (segments may overlap in v3)."""
    total = (until - since).total_seconds()
    if total <= 0:
        return 0.0
    spans = sorted((max(s.start, since), min(s.end, until)) for s in segs if s.user_id)
    covered = 0.0
    cur_s: datetime | None = None
    cur_e: datetime | None = None
    for s, e in spans:
        if s >= e:
            continue
        if cur_e is None or s > cur_e:
            if cur_s is not None and cur_e is not None:
                covered += (cur_e - cur_s).total_seconds()
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None and cur_e is not None:
        covered += (cur_e - cur_s).total_seconds()
    return round(100.0 * covered / total, 2)


# --------------------------------------------------------------------------- v3 rotations


def event_assignments(
    ev: V3Event, rotation_id: str, tz: ZoneInfo, since: datetime, until: datetime
) -> list[Segment]:
    """Shifts of one event meeting [since, until), clipped to its effective range."""
    dur = ev.end_time - ev.start_time
    eff_lo = ev.effective_since
    eff_hi = ev.effective_until
    lo = max(since, eff_lo) if eff_lo else since
    hi = min(until, eff_hi) if eff_hi else until
    if lo >= hi:
        return []
    if ev.rule is None:
        occ: Iterator[tuple[int, datetime]] = iter(
            [(0, ev.start_time)] if ev.start_time < hi and ev.end_time > lo else []
        )
    else:
        occ = occurrences(ev.rule, ev.start_time, tz, lo, hi, dur)
    out: list[Segment] = []
    n = len(ev.members)
    for k, s in occ:
        e = s + dur
        # an event only produces shifts inside its effective range (a capped event stops there)
        if eff_lo is not None:
            s = max(s, eff_lo)
        if eff_hi is not None:
            e = min(e, eff_hi)
        if s >= e:
            continue
        if ev.strategy == "every_member_assignment_strategy":
            members = ev.members
        else:
            members = [ev.members[(k // max(1, ev.shifts_per_member)) % n]]
        for uid in members:
            out.append(Segment(s, e, uid, "rotation", rotation_id))
    return out


def _apply_v3_override(out: list[Segment], ov: Override) -> list[Segment]:
    """Replace the overridden member of the override's rotation / custom shift in its span."""
    kind, target = (
        ("rotation", ov.rotation_id) if ov.rotation_id else ("custom_shift", ov.custom_shift_id)
    )
    cut: list[Segment] = []
    for seg in out:
        if (
            seg.source != kind
            or seg.source_id != target
            or seg.end <= ov.start
            or seg.start >= ov.end
            or (ov.overridden_given and seg.user_id != ov.overridden_user_id)
        ):
            cut.append(seg)
            continue
        if seg.start < ov.start:
            cut.append(Segment(seg.start, ov.start, seg.user_id, seg.source, seg.source_id))
        if seg.end > ov.end:
            cut.append(Segment(ov.end, seg.end, seg.user_id, seg.source, seg.source_id))
        cut.append(
            Segment(
                max(seg.start, ov.start),
                min(seg.end, ov.end),
                ov.user_id,
                f"{kind}_override",
                ov.id,
                target or "",
            )
        )
    return cut


def v3_assignments(
    schedule: Schedule, since: datetime, until: datetime, *, overflow: bool = False
) -> list[Segment]:
    """computed_shift_assignments: may overlap (several people on call at once).

    Rotations' shifts plus custom shifts (each an extra responder); an override replaces only
    the overridden member of the one rotation or custom shift it targets, during its span.
    """
    if since >= until:
        return []
    if not schedule.rotations:
        # An upgraded v2 schedule keeps its layer semantics: one person at a time.
        segs = final_segments(schedule, since, until)
        if overflow:
            segs = final_entries(schedule, since, until, overflow=True)
        return segs
    tz = zone(schedule.time_zone)
    out: list[Segment] = []
    for rot in schedule.rotations:
        for ev in rot.events:
            out.extend(event_assignments(ev, rot.id, tz, since, until))
    for cs in schedule.custom_shifts:
        if cs.start < until and cs.end > since:
            out.append(Segment(cs.start, cs.end, cs.user_id, "custom_shift", cs.id))
    for ov in schedule.overrides:
        if ov.start < until and ov.end > since and (ov.rotation_id or ov.custom_shift_id):
            out = _apply_v3_override(out, ov)
    if not overflow:
        out = [
            Segment(
                max(s.start, since), min(s.end, until), s.user_id, s.source, s.source_id, s.target
            )
            for s in out
        ]
        out = [s for s in out if s.start < s.end]
    out.sort(key=lambda s: (s.start, s.end, s.user_id or ""))
    return out


def oncall_segments(schedule: Schedule, since: datetime, until: datetime) -> list[Segment]:
    """Who is on call via this schedule in the window, with true start/end (for /oncalls)."""
    if until <= since:
        until = since + timedelta(seconds=1)
    if schedule.version == 3:
        segs = v3_assignments(schedule, since, until, overflow=True)
    else:
        segs = final_entries(schedule, since, until, overflow=True)
    return [s for s in segs if s.user_id is not None]

"""Schedule edits that, like PagerDuty's, change only the future.

Removing a user "effective now" leaves every entry before the edit instant as it was and keeps
the user out of every entry from that instant on:

- v2 layer: the layer is ended at the edit instant and a copy without the user starts there
  (same virtual start, turn length and restrictions), so the remaining users rotate on from the
  same anchor (the rotation shrinks, as PagerDuty's v2 docs describe). A layer that starts later
  is edited in place.
- v3 event: an active event is capped at the edit instant (PagerDuty: deleting an event keeps
  the shifts it produced) and a successor with the same recurrence takes over, the user's slot
  replaced by `empty_member` so everyone else keeps their turns ("Schedules v2 to v3 upgrade
  guide", offboarding example). An event that has not started yet is edited in place.
- Overrides and custom shifts that put the user on call are cut at the edit instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from .scenario import Layer, Schedule, V3Event


@dataclass
class RemovalResult:
    ended_layers: list[str] = field(default_factory=list)
    new_layers: list[str] = field(default_factory=list)
    capped_events: list[str] = field(default_factory=list)
    new_events: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)  # layers/events changed in place
    trimmed_overrides: list[str] = field(default_factory=list)
    trimmed_custom_shifts: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(vars(self).values())


def _remove_from_layer(
    sched: Schedule, idx: int, uid: str, at: datetime, new_id: str, res: RemovalResult
) -> int:
    """Returns how many layers now sit at idx (1 or 2)."""
    layer = sched.layers[idx]
    if uid not in layer.users or (layer.end is not None and layer.end <= at):
        return 1
    rest = [u for u in layer.users if u != uid]
    if layer.start >= at:
        res.edited.append(layer.id)
        if rest:
            layer.users = rest
            return 1
        del sched.layers[idx]
        return 0
    old_end = layer.end
    layer.end = at
    res.ended_layers.append(layer.id)
    if not rest:
        return 1
    successor = Layer(
        id=new_id,
        name=layer.name,
        start=at,
        rotation_virtual_start=layer.rotation_virtual_start,
        rotation_turn_length_seconds=layer.rotation_turn_length_seconds,
        users=rest,
        end=old_end,
        restrictions=list(layer.restrictions),
    )
    # same priority as the layer it continues: right after it
    sched.layers.insert(idx + 1, successor)
    res.new_layers.append(successor.id)
    return 2


def _remove_from_event(
    events: list[V3Event], idx: int, uid: str, at: datetime, new_id: str, res: RemovalResult
) -> int:
    ev = events[idx]
    if uid not in ev.members or (ev.effective_until is not None and ev.effective_until <= at):
        return 1
    members = [None if m == uid else m for m in ev.members]
    since = ev.effective_since or ev.start_time
    if since >= at:
        ev.members = members
        res.edited.append(ev.id)
        return 1
    successor = replace(ev, id=new_id, members=members, effective_since=at)
    ev.effective_until = at
    events.insert(idx + 1, successor)
    res.capped_events.append(ev.id)
    res.new_events.append(successor.id)
    return 2


def remove_user(
    sched: Schedule,
    uid: str,
    at: datetime,
    new_id: object,
    *,
    layer_id: str | None = None,
    rotation_id: str | None = None,
) -> RemovalResult:
    """Take `uid` off the schedule (or one layer / rotation of it) from `at` on.

    `new_id` is a callable giving fresh ids for successor layers/events."""
    res = RemovalResult()
    make_id = new_id if callable(new_id) else (lambda: str(new_id))
    i = 0
    while i < len(sched.layers):
        if layer_id is not None and sched.layers[i].id != layer_id:
            i += 1
            continue
        if rotation_id is not None:
            break
        i += _remove_from_layer(sched, i, uid, at, make_id(), res)
    for rot in sched.rotations:
        if rotation_id is not None and rot.id != rotation_id:
            continue
        if layer_id is not None:
            break
        j = 0
        while j < len(rot.events):
            j += _remove_from_event(rot.events, j, uid, at, make_id(), res)
    if layer_id is None and rotation_id is None:
        kept = []
        for ov in sched.overrides:
            if ov.user_id == uid and ov.end > at:
                res.trimmed_overrides.append(ov.id)
                if ov.start >= at:
                    continue
                ov.end = at
            kept.append(ov)
        sched.overrides = kept
        shifts = []
        for cs in sched.custom_shifts:
            if cs.user_id == uid and cs.end > at:
                res.trimmed_custom_shifts.append(cs.id)
                if cs.start >= at:
                    continue
                cs.end = at
            shifts.append(cs)
        sched.custom_shifts = shifts
    return res

"""Defensive parsing of PagerDuty's JSON into records, and the time format it expects.

Nothing here trusts a field to be present or of the schema's type: a wrong item is skipped (or
its field left empty), never a reason to fail a whole sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from models.clock import utcnow
from workers.pagerduty.records import Schedule, Shift, User, UserRef, dedupe


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def whole_second(now: datetime | None) -> datetime:
    """PagerDuty may render nothing for a window whose bounds have sub-second parts
    (PagerDuty/api-schema#479): every window we send starts on a whole second."""
    return aware(now or utcnow()).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return aware(moment).isoformat().replace("+00:00", "Z")


def parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return aware(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def path_segment(value: str) -> str:
    # Ids are PagerDuty's; still, never let one inject a path or query.
    return quote(value, safe="")


def text(item: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = item.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def ref_id(ref: Any) -> str | None:
    if isinstance(ref, Mapping):
        value = ref.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def user_ref(item: Any) -> UserRef | None:
    """A user reference (or a full user object) as a schedule or on-call entry names it.

    A deleted user stays on schedules as a placeholder carrying ``deleted_at``
    (go-pagerduty#509); its summary may read "Deleted User" or keep the old name.
    """
    uid = ref_id(item)
    if uid is None:
        return None
    assert isinstance(item, Mapping)
    return UserRef(
        id=uid,
        name=text(item, "name", "summary"),
        deleted=bool(item.get("deleted_at")),
    )


def user(item: Any) -> User | None:
    if not isinstance(item, Mapping):
        return None
    uid = ref_id(item)
    if uid is None:
        return None
    return User(
        id=uid,
        name=text(item, "name", "summary") or "",
        email=text(item, "email"),
        time_zone=text(item, "time_zone"),
        role=text(item, "role"),
        active=not item.get("deleted_at"),
    )


def user_refs(items: Any) -> tuple[UserRef, ...]:
    """Deduplicated references from a list of refs or of ``{"user": ref}`` wrappers."""
    out: dict[str, UserRef] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("user"), Mapping):
            item = item["user"]
        ref = user_ref(item)
        if ref is not None:
            out.setdefault(ref.id, ref)
    return tuple(out.values())


def v2_schedule(item: Any) -> Schedule | None:
    """A ``GET /schedules`` list item: name, time zone, members (``users``) and the escalation
    policies that use it. The list never says who is on call (PagerDuty/api-schema#430)."""
    if not isinstance(item, Mapping):
        return None
    sid = ref_id(item)
    if sid is None:
        return None
    policies = item.get("escalation_policies")
    return Schedule(
        id=sid,
        name=text(item, "name", "summary") or sid,
        version="v2",
        time_zone=text(item, "time_zone"),
        members=user_refs(item.get("users")),
        escalation_policy_ids=dedupe(p for p in map(ref_id, policies) if p)
        if isinstance(policies, list)
        else None,
    )


def rendered_shifts(schedule_id: str, entries: Any) -> tuple[Shift, ...]:
    """``final_schedule.rendered_schedule_entries`` of a v2 schedule detail."""
    out: list[Shift] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        ref = user_ref(entry.get("user"))
        if ref is None:
            continue
        start, end = parse_time(entry.get("start")), parse_time(entry.get("end"))
        if start is not None and end is not None and end <= start:
            continue
        out.append(Shift(schedule_id, ref, start, end))
    return tuple(out)


def v3_shifts(schedule_id: str, assignments: Any) -> tuple[Shift, ...]:
    """``final_schedule.computed_shift_assignments``: may overlap; empty slots are skipped."""
    out: list[Shift] = []
    for entry in assignments if isinstance(assignments, list) else []:
        if not isinstance(entry, Mapping):
            continue
        member = entry.get("member")
        if not isinstance(member, Mapping) or member.get("type", "user_member") != "user_member":
            continue
        uid = member.get("user_id")
        start, end = parse_time(entry.get("start_time")), parse_time(entry.get("end_time"))
        if not isinstance(uid, str) or not uid or start is None or end is None or end <= start:
            continue
        out.append(Shift(schedule_id, UserRef(uid), start, end))
    return tuple(out)


def v3_rotation_members(rotations: Any) -> tuple[UserRef, ...]:
    """Users named by a v3 schedule's rotation events (the people on the schedule)."""
    out: dict[str, UserRef] = {}
    for rotation in rotations if isinstance(rotations, list) else []:
        events = rotation.get("events") if isinstance(rotation, Mapping) else None
        for event in events if isinstance(events, list) else []:
            strategy = event.get("assignment_strategy") if isinstance(event, Mapping) else None
            members = strategy.get("members") if isinstance(strategy, Mapping) else None
            for member in members if isinstance(members, list) else []:
                if not isinstance(member, Mapping) or member.get("type") != "user_member":
                    continue
                uid = member.get("user_id")
                if isinstance(uid, str) and uid:
                    out.setdefault(uid, UserRef(uid))
    return tuple(out.values())

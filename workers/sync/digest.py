"""What an applied pass made true, as one hash: the check's quiet test without a transaction.

``apply`` writes, from a snapshot, who is on call now (the on-call mirror and the members on
duty), each bound rotation's members and its planned handoffs, all derived from the bound
schedules' members and timelines and from which workspace member each PagerDuty user is. The
digest hashes exactly those derived values (not the raw read: a timeline's window slides every
minute without changing anything written), with the connection's generation and its bound
rotations. A later check whose digest equals the one the last apply stored on the connection
would write nothing: ``workers.sync.batch`` records it as quiet in one statement for the batch.

Anything else that changes these rows changes the digest's inputs too: the handoff loop moves
who is on call now (the next check's ``on_call_spans`` differ, so it goes through apply), a
re-bind changes the rotations, a member link changes ``member_of_user``, a reconnect the
generation.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from workers.handoffs import plan as handoff_plan
from workers.pagerduty.snapshot import AccountSnapshot


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _schedule_state(snapshot: AccountSnapshot, sid: str, now: datetime, people: set[str]) -> object:
    """Members, who is on call now and the planned handoffs of one bound schedule (what apply
    writes for it), or a marker when apply keeps its last state."""
    schedule = next((s for s in snapshot.schedules if s.id == sid), None)
    timeline = snapshot.timelines.get(sid)
    if schedule is None or timeline is None or sid in snapshot.unreadable:
        return "kept"
    at = handoff_plan.present(snapshot, timeline, now)
    on_call = handoff_plan.on_call_spans(timeline, at)
    plans = [
        (
            _iso(p.at),
            list(p.user_ids),
            handoff_plan.encode_shifts(handoff_plan.on_call_spans(timeline, p.at)),
        )
        for p in handoff_plan.handoffs_in(timeline, at)
    ]
    members = list(schedule.member_user_ids)
    people.update(members, on_call, *(p[1] for p in plans))
    return {
        "members": members,
        "on_call": [[uid, _iso(a), _iso(b)] for uid, (a, b) in on_call.items()],
        "plans": plans,
    }


def digest(
    snapshot: AccountSnapshot,
    now: datetime,
    *,
    generation: int,
    rotations: Iterable[tuple[uuid.UUID, str | None]],
    member_of_user: Mapping[str, uuid.UUID | None],
) -> str:
    """The hash of what applying ``snapshot`` at ``now`` makes true for the bound
    ``rotations`` (rotation id, schedule id). ``member_of_user``: the workspace member of each
    active linked PagerDuty user (others absent or None), as apply uses it."""
    # A rotation bound to no schedule yet is kept as it is (apply warns): "" stands for it.
    bound = sorted((str(rid), sid or "") for rid, sid in rotations)
    people: set[str] = set()
    schedules = {
        sid: _schedule_state(snapshot, sid, now, people)
        for sid in sorted({sid for _, sid in bound if sid} | set(snapshot.timelines))
    }
    links = {uid: str(member_of_user.get(uid) or "") for uid in sorted(people)}
    text = json.dumps(
        {"generation": generation, "bound": bound, "schedules": schedules, "links": links},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()

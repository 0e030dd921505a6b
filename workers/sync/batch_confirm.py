"""Confirming in memory a bound schedule whose whole window the check read (its detail).

``/oncalls`` does not show a schedule no escalation policy uses: the check reads its detail over
the whole window, so ``read_check`` cannot confirm it from "now" alone. The window says more
than "now", though: the batch's plan read the mirror's rows (with their shifts) and every bound
rotation's handoff rows, so the check can tell, with apply's own rules, whether apply would
write anything for that schedule. It is confirmed only where apply would keep everything:

* the on-call mirror holds exactly whom the window has on call at the check's instant, with
  the same shifts (``handoffs.plan.on_call_spans``, as ``handoffs.on_call`` compares them);
* no handoff of the schedule is due and not applied yet (apply would drop it: a write);
* each rotation bound to it has exactly the handoff rows ``handoffs.plan.replace_pending``
  would plan from the window (instant, people, shifts, generation, schedule).

Anything else (an override later today, someone else on call now, a window that reaches a new
handoff) goes to apply, which decides from the database under the row lock.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from workers.handoffs.plan import encode_shifts, handoffs_in, on_call_spans
from workers.pagerduty.snapshot import AccountSnapshot
from workers.pagerduty.window import CHECK_WINDOW, MAX_ID
from workers.sync.batch_plan import CheckPlan

# A handoff row as replace_pending compares it: people, then shifts.
Planned = dict[datetime, tuple[list[str], list[list[str | None]] | None]]


def window_confirmed(plan: CheckPlan, check: AccountSnapshot) -> frozenset[str]:
    """The bound schedules read over their whole window whose stored timeline apply would
    keep as it is (the module's rules); those ``read_check`` confirmed are not asked again."""
    moment = check.fetched_at
    if plan.cred is None or plan.stored_at != moment:
        return frozenset()  # the plan's rows are not of this instant: apply decides
    out: set[str] = set()
    for sid in plan.read.bound - check.confirmed - set(check.unreadable):
        timeline = check.timelines.get(sid)
        if timeline is None or len(sid) > MAX_ID or timeline.since != moment:
            continue
        if timeline.until - moment <= CHECK_WINDOW:
            continue  # "now" only: read_check's own comparison
        if on_call_spans(timeline, moment) != plan.spans.get(sid, {}):
            continue
        planned: Planned = {
            p.at: (list(p.user_ids), encode_shifts(on_call_spans(timeline, p.at)))
            for p in handoffs_in(timeline, moment)
        }
        rotations = [r.rotation_id for r in plan.rotations if r.schedule_id == sid]
        if all(_keeps(plan, rid, sid, moment, planned) for rid in rotations):
            out.add(sid)
    return frozenset(out)


def _keeps(plan: CheckPlan, rid: uuid.UUID, sid: str, moment: datetime, planned: Planned) -> bool:
    """Would ``replace_pending`` keep this rotation's rows as they are (and add none)?"""
    assert plan.cred is not None
    have: Planned = {}
    # The rotation's rows of its other schedules are theirs to confirm.
    followed = {r.schedule_id for r in plan.rotations if r.rotation_id == rid}
    for _row_id, at, user_ids, generation, schedule_id, shifts in plan.handoffs.get(rid, []):
        if schedule_id != sid and schedule_id in followed:
            continue
        if at <= moment or generation != plan.cred.generation or schedule_id != sid:
            return False  # due and not applied, or planned for another binding: apply writes
        have[at] = (user_ids, shifts)  # None (before migration 0007): rewritten
    return have == planned

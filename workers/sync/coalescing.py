"""One sync per connection at a time: a request while one runs is coalesced, never lost.

The holder of the Redis lock ``sync:<id>`` clears the rerun flag ``sync-rerun:<id>`` before each
pass (its fetch then starts after any request flagged before), and runs another pass when the
flag was set again meanwhile; after releasing it checks the flag once more, and a requester that
set the flag tries the lock once more. docs/sync-and-disconnect.md ("Coalescing") says why this
never loses a "sync now". Redis is for efficiency only: losing the lock costs a duplicate sync.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from workers.core import locks, metrics
from workers.sync.records import SyncResult

# Longer than the sync task's hard time limit (the contract), so a live holder never loses it;
# a holder that was SIGKILLed blocks syncs of its connection for at most this long.
SYNC_LOCK_TTL_SECONDS = 200.0
RERUN_FLAG_TTL_SECONDS = 300.0
# A holder reruns at most this many passes for coalesced requests, then hands over to a task.
MAX_PASSES = 3


def _done(result: SyncResult) -> bool:
    """No further pass helps: the connection is unavailable or the task will retry."""
    return result.status == "unavailable" or bool(result.retry)


def coalesce(
    connection_id: uuid.UUID,
    one_pass: Callable[[], SyncResult],
    hand_over: Callable[[], object],
) -> SyncResult:
    """Run ``one_pass`` under the connection's lock, or flag a rerun for the holder.

    ``hand_over`` publishes a fresh task for a request still pending after ``MAX_PASSES``.
    """
    lock_name = f"sync:{connection_id}"
    flag_name = f"sync-rerun:{connection_id}"
    result: SyncResult | None = None
    passes = 0
    while True:
        with locks.try_lock(lock_name, SYNC_LOCK_TTL_SECONDS) as held:
            if not held:
                if result is not None:
                    # We already ran; the new holder took the lock after the pending request
                    # set its flag, so its own fetch covers that request.
                    return result
                locks.set_flag(flag_name, RERUN_FLAG_TTL_SECONDS)
                # Retry once: the holder may have released between our try and our flag.
                with locks.try_lock(lock_name, SYNC_LOCK_TTL_SECONDS) as held_now:
                    if not held_now:
                        metrics.incr("rrpd_syncs_total", outcome="coalesced")
                        return SyncResult(status="coalesced", connection_id=str(connection_id))
                    result, passes = _passes(flag_name, one_pass, passes)
            else:
                result, passes = _passes(flag_name, one_pass, passes)
        # Released. A request that arrived after our last flag check but before the release
        # found the lock held and left only the flag: pick it up rather than lose it.
        if not locks.flag_set(flag_name) or _done(result):
            return result
        if passes >= MAX_PASSES:
            # Bounded work per task: hand the remaining request to a fresh task.
            locks.clear_flag(flag_name)
            hand_over()
            return result


def _passes(
    flag_name: str, one_pass: Callable[[], SyncResult], passes: int
) -> tuple[SyncResult, int]:
    """Run passes while holding the lock, one more each time the rerun flag was set."""
    while True:
        # Cleared *before* the fetch: a request flagged from here on is covered by the next pass.
        locks.clear_flag(flag_name)
        result = one_pass()
        passes += 1
        result.passes = passes
        if _done(result) or passes >= MAX_PASSES:
            return result, passes
        if not locks.flag_set(flag_name):
            return result, passes

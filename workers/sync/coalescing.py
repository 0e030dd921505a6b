"""One sync per connection at a time: a request while one runs is coalesced, never lost.

The holder of the Redis lease ``sync:<id>`` (short, renewed by a heartbeat while the pass runs:
``workers.core.locks.Lease``) clears the rerun flag ``sync-rerun:<id>`` before each pass (its
fetch then starts after any request flagged before), and runs another pass when the flag was
set again meanwhile; after releasing it checks the flag once more, and a requester that set the
flag tries the lease once more. A coalesced requester also publishes one delayed re-check
(countdown: a lease and a little), so a request whose holder died (its lease lapses within
``lease_seconds()``) is served by the re-check rather than waiting for the flag to expire.
docs/sync-and-disconnect.md ("Coalescing") says why this never loses a "sync now". Redis is for
efficiency only: losing the lease costs a duplicate sync; the connection row's lock and
generation in ``RunContext.apply`` keep two passes from writing over each other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis

from workers.core import locks, metrics
from workers.core.settings import get_settings
from workers.sync.kinds import Outcome
from workers.sync.records import SyncResult
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import publish_now

log = logging.getLogger(__name__)

RERUN_FLAG_TTL_SECONDS = 300.0
# A holder reruns at most this many passes for coalesced requests, then hands over to a task.
MAX_PASSES = 3


def lease_seconds() -> float:
    """How long the ``sync:<id>`` lease lives unless renewed (``RRPD_SYNC_LEASE_SECONDS``, 15 s
    by default): renewed every third of it while a pass runs, so a live holder keeps it through
    a long pass and a SIGKILLed holder's lease lapses within it."""
    return float(get_settings().sync_lease_seconds)


def recheck_after_seconds() -> float:
    """The re-check runs once a dead holder's lease has surely lapsed."""
    return lease_seconds() + 2.0


def lease_name(connection_id: uuid.UUID | str) -> str:
    return f"sync:{connection_id}"


def rerun_flag(connection_id: uuid.UUID | str) -> str:
    return f"sync-rerun:{connection_id}"


def _done(result: SyncResult) -> bool:
    """No further pass helps: the connection is unavailable or the task will retry."""
    return result.status == Outcome.UNAVAILABLE or bool(result.retry)


def _coalesced(connection_id: uuid.UUID) -> SyncResult:
    return SyncResult(status=Outcome.COALESCED, connection_id=str(connection_id))


def _publish_recheck(connection_id: uuid.UUID, kind: str) -> None:
    """One delayed re-check per connection at a time: it runs a sync if the rerun flag is still
    set then, i.e. nobody picked it up (the holder died). ``kind``: the coalesced request's."""
    name = f"sync-recheck:{connection_id}"
    try:
        after = recheck_after_seconds()
        if not locks.set_flag_value(name, "pending", after + lease_seconds()):
            return  # a re-check is already on its way
        task_id = publish_now(
            SYNC_CONNECTION,
            countdown=after,
            connection_id=str(connection_id),
            kind=kind,
        )
        locks.put_flag(name, task_id, after + 60)
        metrics.incr("rrpd_sync_rechecks_total")
    except redis.RedisError as exc:
        # The flag stays set; the next scheduled sync serves the request.
        log.warning("sync re-check not published (%s)", type(exc).__name__)


def _idle_recheck(connection_id: uuid.UUID, flag_name: str, task_id: str | None) -> bool:
    """True when this task is a re-check with nothing left to do (the flag was served)."""
    if task_id is None:
        return False
    name = f"sync-recheck:{connection_id}"
    if locks.get_flag(name) != task_id:
        return False
    locks.clear_flag(name)
    return not locks.flag_set(flag_name)


def coalesce(
    connection_id: uuid.UUID,
    one_pass: Callable[[], SyncResult],
    hand_over: Callable[[], object],
    *,
    kind: str,
    task_id: str | None,
) -> SyncResult:
    """Run ``one_pass`` under the connection's lease, or flag a rerun for the holder.

    ``hand_over`` publishes a fresh task for a request still pending after ``MAX_PASSES``.
    ``kind`` and ``task_id``: the request's (its re-check carries the kind; a re-check knows
    itself by its task id), None outside a task.
    """
    name = lease_name(connection_id)
    flag_name = rerun_flag(connection_id)
    if _idle_recheck(connection_id, flag_name, task_id):
        metrics.incr("rrpd_syncs_total", outcome="recheck_idle")
        return _coalesced(connection_id)
    result: SyncResult | None = None
    passes = 0
    while True:
        with locks.hold_lease(name, lease_seconds()) as held:
            if held is None:
                if result is not None:
                    # We already ran; the new holder took the lease after the pending request
                    # set its flag, so its own fetch covers that request.
                    return result
                locks.set_flag(flag_name, RERUN_FLAG_TTL_SECONDS)
                # Retry once: the holder may have released between our try and our flag.
                with locks.hold_lease(name, lease_seconds()) as held_now:
                    if held_now is None:
                        _publish_recheck(connection_id, kind)
                        metrics.incr("rrpd_syncs_total", outcome=Outcome.COALESCED)
                        return SyncResult(
                            status=Outcome.COALESCED, connection_id=str(connection_id)
                        )
                    result, passes = _passes(flag_name, one_pass, passes)
            else:
                result, passes = _passes(flag_name, one_pass, passes)
        # Released. A request that arrived after our last flag check but before the release
        # found the lease held and left only the flag: pick it up rather than lose it.
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
    """Run passes while holding the lease, one more each time the rerun flag was set."""
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

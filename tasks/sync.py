"""Sync tasks: thin wrappers over ``workers.sync`` with queue, limits and retry policy.

Public contract (enqueued by name, keyword arguments, ids only):
``pagerduty.sync_connection(connection_id, kind="scheduled")`` and ``pagerduty.schedule_syncs()``.
"""

from __future__ import annotations

import random
from typing import Any

from celeryconfig import MAX_RETRY_COUNTDOWN
from workers import sync
from workers.celery_app import app
from workers.enqueue import SCHEDULE_SYNCS, SYNC_CONNECTION

KINDS = frozenset({"scheduled", "manual", "initial", "binding"})
SYNC_MAX_RETRIES = 5
# Transient failures: 5 s, 10 s, 20 s, 40 s, 80 s (capped), each with jitter.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 300.0


def retry_countdown(result: sync.SyncResult, retries: int, rng: random.Random) -> float:
    """Seconds before the next attempt: PagerDuty's reset for a 429, else backoff with jitter."""
    if result.retry == "rate_limited" and result.retry_after is not None:
        countdown = result.retry_after + rng.uniform(0, 2.0)
    else:
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**retries)
        countdown = rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never retries at once
    return round(min(countdown, MAX_RETRY_COUNTDOWN), 3)


@app.task(
    bind=True,
    name=SYNC_CONNECTION,
    queue="sync",
    soft_time_limit=150,
    time_limit=180,
    max_retries=SYNC_MAX_RETRIES,
    acks_late=True,
    ignore_result=False,
)
def sync_connection(self: Any, *, connection_id: str, kind: str = "scheduled") -> dict[str, Any]:
    kind = kind if kind in KINDS else "scheduled"
    result = sync.sync_connection(connection_id, kind=kind, task_id=self.request.id)
    if result.retry and self.request.retries < self.max_retries:
        raise self.retry(countdown=retry_countdown(result, self.request.retries, random.Random()))
    return result.as_dict()


@app.task(
    name=SCHEDULE_SYNCS,
    queue="sync",
    soft_time_limit=45,
    time_limit=55,
    max_retries=0,
    acks_late=True,
    ignore_result=False,
)
def schedule_syncs() -> dict[str, int]:
    return sync.schedule_syncs()

"""Disconnect tasks: thin wrappers over ``workers.disconnect``.

Public contract (enqueued by name, keyword arguments, ids only):
``pagerduty.disconnect(connection_id, actor_member_id=None)`` and
``pagerduty.revoke_tokens(connection_id)``, both on the ``interactive`` queue.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy.exc import OperationalError

from workers import disconnect as disconnect_logic
from workers.celery_app import app
from workers.enqueue import DISCONNECT, REVOKE_TOKENS


@app.task(
    bind=True,
    name=DISCONNECT,
    queue="interactive",
    soft_time_limit=30,
    time_limit=60,
    max_retries=5,
    acks_late=True,
    ignore_result=False,
)
def disconnect(
    self: Any, *, connection_id: str, actor_member_id: str | None = None
) -> dict[str, Any]:
    try:
        result = disconnect_logic.disconnect(connection_id, actor_member_id=actor_member_id)
    except OperationalError as exc:
        # The database went away or a deadlock was broken: the transaction rolled back as a
        # whole, so trying again is safe.
        raise self.retry(
            exc=exc, countdown=random.uniform(1, 2 ** (self.request.retries + 1))
        ) from exc
    return result.as_dict()


@app.task(
    bind=True,
    name=REVOKE_TOKENS,
    queue="interactive",
    soft_time_limit=30,
    time_limit=45,
    max_retries=3,
    acks_late=True,
    ignore_result=False,
)
def revoke_tokens(self: Any, *, connection_id: str) -> dict[str, Any]:
    result = disconnect_logic.revoke_tokens(connection_id)
    if result.remaining and self.request.retries < self.max_retries:
        # 15 s, 45 s, 135 s; after that the beat sweep (schedule_syncs) picks the rows up.
        raise self.retry(countdown=15 * 3**self.request.retries)
    return result.as_dict()

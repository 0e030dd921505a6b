"""Disconnect tasks: thin wrappers over ``workers.disconnect``.

Public contract (enqueued by name, keyword arguments, ids only):
``pagerduty.disconnect(connection_id, actor_member_id=None)`` on the ``interactive`` queue, and
the deprecated no-op ``pagerduty.revoke_tokens(connection_id)``.
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
    name=REVOKE_TOKENS,
    queue="interactive",
    soft_time_limit=10,
    time_limit=20,
    max_retries=0,
    acks_late=True,
    ignore_result=False,
)
def revoke_tokens(*, connection_id: str) -> dict[str, Any]:
    """Deprecated: kept so senders of the old contract get an answer, not an unknown task.

    PagerDuty has no revocation endpoint; a disconnect deletes our copies of the tokens at once.
    """
    return disconnect_logic.revoke_tokens(connection_id).as_dict()

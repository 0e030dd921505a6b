"""Enqueue tasks by their public name: as outbox rows, in the caller's transaction.

The API and tasks both go through ``enqueue``: it fixes the task id up front (so the API can
return it), records which workspace the task belongs to (``GET /v1/tasks/{id}`` shows callers
only their own) and writes the message into the outbox (``workers.outbox``) in the same
transaction as the change that needs it. Nothing is published before the commit, nothing is
lost after it: the relay publishes the row once committed (milliseconds later, or when Redis is
back). Arguments are checked against the contract (``workers.tasking.contract``): ids and plain
values, never secrets.

``publish_now`` and ``publish_many`` are for periodic work that is not caused by a change
(beat's fan-out, the token-refresh sweep): a message of theirs that Redis loses is sent again by
the next round, so they publish directly, without an outbox row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from models import TaskRecord
from workers.outbox import publisher
from workers.outbox.writer import add_task
from workers.tasking.contract import TaskSpec


def enqueue(
    session: Session,
    spec: TaskSpec,
    *,
    workspace_id: uuid.UUID | None = None,
    countdown: float | None = None,
    **kwargs: Any,
) -> str:
    """Have ``spec(**kwargs)`` run once ``session`` commits; return the task id."""
    plain = spec.check_kwargs(kwargs)
    task_id = str(uuid.uuid4())
    if workspace_id is not None:
        session.add(TaskRecord(task_id=task_id, workspace_id=workspace_id, task_name=spec.name))
    add_task(
        session,
        spec,
        task_id=task_id,
        kwargs=plain,
        countdown=countdown,
        workspace_id=workspace_id,
    )
    return task_id


def publish_now(spec: TaskSpec, *, countdown: float | None = None, **kwargs: Any) -> str:
    """Publish at once, outside any transaction (periodic work only: see the module doc)."""
    return publisher.send(spec.name, spec.check_kwargs(kwargs), countdown=countdown)


def publish_many(spec: TaskSpec, messages: Iterable[tuple[dict[str, Any], float | None]]) -> int:
    """Publish many messages of one task over a single producer connection (beat's fan-out).

    Thousands of separate ``send_task`` calls each take a pooled connection and cost seconds.
    """
    batch = [
        (spec.name, spec.check_kwargs(kwargs), None, round(countdown, 3) if countdown else None)
        for kwargs, countdown in messages
    ]
    # Periodic work: nobody polls these, so no result and no STARTED state (two Redis writes
    # per message saved); a sync someone waits for goes through ``enqueue`` and keeps both.
    return publisher.send_many(batch, ignore_result=True) if batch else 0

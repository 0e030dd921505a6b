"""Publish tasks by their public name, only after the transaction that made the work commits.

The API and tasks both go through ``enqueue``: it fixes the task id up front (so the API can
return it), records which workspace the task belongs to (``GET /v1/tasks/{id}`` shows callers
only their own), and publishes after commit. Arguments are the ones the contract
(``workers.tasking.contract``) declares: ids and plain values, never secrets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from models import TaskRecord
from workers.core.db import after_commit
from workers.tasking.contract import TaskSpec


def _plain(spec: TaskSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    spec.check_kwargs(kwargs)
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in kwargs.items()}


def enqueue(
    session: Session,
    spec: TaskSpec,
    *,
    workspace_id: uuid.UUID | None = None,
    countdown: float | None = None,
    **kwargs: Any,
) -> str:
    """Publish ``spec(**kwargs)`` after ``session`` commits; return the task id."""
    plain = _plain(spec, kwargs)
    task_id = str(uuid.uuid4())
    if workspace_id is not None:
        session.add(TaskRecord(task_id=task_id, workspace_id=workspace_id, task_name=spec.name))

    def publish() -> None:
        from workers.tasking.app import app

        app.send_task(spec.name, kwargs=plain, task_id=task_id, countdown=countdown)

    after_commit(session, publish)
    return task_id


def publish_now(spec: TaskSpec, *, countdown: float | None = None, **kwargs: Any) -> str:
    """Publish outside any transaction (beat fan-out, hand-overs of our own)."""
    from workers.tasking.app import app

    return str(app.send_task(spec.name, kwargs=_plain(spec, kwargs), countdown=countdown).id)


def publish_many(spec: TaskSpec, messages: Iterable[tuple[dict[str, Any], float | None]]) -> None:
    """Publish many messages of one task over a single producer connection.

    Thousands of separate ``send_task`` calls each take a pooled connection and cost seconds.
    """
    batch = [(_plain(spec, kwargs), countdown) for kwargs, countdown in messages]
    if not batch:
        return
    from workers.tasking.app import app

    with app.producer_or_acquire() as producer:
        for kwargs, countdown in batch:
            app.send_task(
                spec.name,
                kwargs=kwargs,
                countdown=round(countdown, 3) if countdown else None,
                producer=producer,
            )

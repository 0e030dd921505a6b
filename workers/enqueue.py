"""Publish tasks by their public name, only after the transaction that made the work commits.

The API and tasks both go through ``enqueue``: it fixes the task id up front (so the API can
return it), records which workspace the task belongs to (``GET /v1/tasks/{id}`` shows callers
only their own), and publishes after commit. Arguments are ids and plain values, never secrets.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from models import TaskRecord
from workers.core.db import after_commit

# The public task contract (docs/tasks.md). Other services enqueue these names.
VALIDATE_API_KEY = "pagerduty.validate_api_key"
EXCHANGE_OAUTH_CODE = "pagerduty.exchange_oauth_code"
REFRESH_TOKEN = "pagerduty.refresh_token"  # noqa: S105 - a task name
REFRESH_EXPIRING_TOKENS = "pagerduty.refresh_expiring_tokens"
SYNC_CONNECTION = "pagerduty.sync_connection"
SCHEDULE_SYNCS = "pagerduty.schedule_syncs"
DISCONNECT = "pagerduty.disconnect"
REVOKE_TOKENS = "pagerduty.revoke_tokens"

_SECRET_WORDS = ("key", "token", "secret", "code", "verifier", "password")


def enqueue(
    session: Session,
    task_name: str,
    *,
    workspace_id: uuid.UUID | None = None,
    countdown: float | None = None,
    **kwargs: Any,
) -> str:
    """Publish ``task_name(**kwargs)`` after ``session`` commits; return the task id."""
    for name in kwargs:
        # Ids only: an argument named like a secret is a bug, caught before it reaches a broker.
        if name.endswith("_id") or name in ("kind", "generation", "reason"):
            continue
        if any(word in name for word in _SECRET_WORDS):
            raise ValueError(f"task argument {name!r} looks like a secret; pass an id instead")
    task_id = str(uuid.uuid4())
    if workspace_id is not None:
        session.add(TaskRecord(task_id=task_id, workspace_id=workspace_id, task_name=task_name))
    plain = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in kwargs.items()}

    def publish() -> None:
        from workers.celery_app import app

        app.send_task(task_name, kwargs=plain, task_id=task_id, countdown=countdown)

    after_commit(session, publish)
    return task_id


def publish_now(task_name: str, *, countdown: float | None = None, **kwargs: Any) -> str:
    """Publish outside any transaction (beat fan-out, retries of our own)."""
    from workers.celery_app import app

    plain = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in kwargs.items()}
    return app.send_task(task_name, kwargs=plain, countdown=countdown).id

"""What ``GET /v1/tasks/{id}`` shows: which workspace enqueued a task, and Celery's state."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import TaskRecord
from workers.core.access import Missing


def task_record(session: Session, workspace_id: uuid.UUID, task_id: str) -> TaskRecord:
    record = session.execute(
        select(TaskRecord).where(
            TaskRecord.task_id == task_id, TaskRecord.workspace_id == workspace_id
        )
    ).scalar_one_or_none()
    if record is None:
        raise Missing("No such task in this workspace.", code="task_not_found")
    return record


def task_state(task_id: str) -> str:
    """Celery's state for the task (PENDING until a worker reports); UNKNOWN if unreachable."""
    try:
        from workers.tasking.app import app

        return str(app.AsyncResult(task_id).state)
    except Exception:  # the result backend is optional for this view
        return "UNKNOWN"

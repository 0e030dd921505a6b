"""The /v1 endpoints that read records: the workspace's audit trail and a task's state (split
from ``api_stub.routes`` to keep modules small; mounted right after it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import AfterValidator

from api_stub.auth import CurrentActor, WorkspaceManager
from api_stub.errors import ErrorResponse
from api_stub.routes import AUTH_ERRORS, MANAGER_ERRORS
from api_stub.schemas import AuditPage, TaskOut, control_free
from workers.core.access import Missing
from workers.core.audit import MAX_PAGE, audit_trail
from workers.core.db import transaction
from workers.tasking.records import task_record, task_state

router = APIRouter(prefix="/v1")


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# --- audit --------------------------------------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/audit",
    response_model=AuditPage,
    summary="The workspace's audit trail",
    description="Who connected, replaced a key, logged in, bound or unbound a rotation, asked "
    "for a sync or a disconnect, and what the system did (connected, invalid, needs_reauth, "
    "disconnected), newest first. `action` keeps actions starting with it (e.g. "
    "`pagerduty.`); `before` pages back. Primary Owner or Admin.",
    tags=["audit"],
    responses=MANAGER_ERRORS,
)
def get_audit(
    actor: WorkspaceManager,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: datetime | None = None,
    action: Annotated[
        str | None, Query(max_length=100), AfterValidator(control_free("action"))
    ] = None,
) -> AuditPage:
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    with transaction() as session:
        events = audit_trail(session, actor.workspace_id, limit=limit, before=before, action=action)
    return AuditPage.model_validate(
        {"events": events, "next_before": events[-1]["at"] if len(events) == limit else None}
    )


# --- tasks --------------------------------------------------------------------------------------


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    summary="A task enqueued for the caller's workspace",
    description="Name, Celery state and creation time; never the task's arguments or result. "
    "Tasks of other workspaces answer 404.",
    tags=["tasks"],
    responses={
        401: AUTH_ERRORS[401],
        404: _err("No such task in the caller's workspace (`task_not_found`)."),
        422: _err("The task id contains control characters (`invalid_request`)."),
    },
)
def get_task(
    task_id: Annotated[str, PathParam(), AfterValidator(control_free("task_id"))],
    actor: CurrentActor,
) -> TaskOut:
    if len(task_id) > 64:
        raise Missing("No such task in this workspace.", code="task_not_found")
    with transaction() as session:
        record = task_record(session, actor.workspace_id, task_id)
    return TaskOut(
        task_id=record.task_id,
        task_name=record.task_name,
        state=task_state(record.task_id),
        created_at=record.created_at,
    )

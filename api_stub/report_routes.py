"""The /v1 endpoints of the on-call report and the workspace settings it uses (the time zone).
Mounted after ``api_stub.routes``; the work is in ``workers.reports``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api_stub.auth import WorkspaceActor, WorkspaceManager
from api_stub.errors import ErrorResponse
from api_stub.routes import AUTH_ERRORS, BODY_ERRORS, MANAGER_ERRORS, body_doc, json_body
from models import utcnow
from workers.core.db import snapshot, transaction
from workers.reports import on_call, zone

router = APIRouter(prefix="/v1")


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


class SettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time_zone: str = Field(
        min_length=1,
        max_length=64,
        description="IANA time zone name, e.g. `Europe/Paris`: where the on-call report's "
        "business hours (Monday to Friday, 09:00-17:00) and weekends are.",
    )


class SettingsOut(BaseModel):
    time_zone: str = Field(description="IANA time zone name; `UTC` unless an admin set one.")


class PersonOut(BaseModel):
    kind: str = Field(
        description="`member`, `pagerduty_user` (no member matched) or "
        "`former_member` (a member deleted since; named as they were)."
    )
    member_id: uuid.UUID | None
    pagerduty_user_id: str | None
    name: str
    email: str | None
    seconds_on_duty: int
    shifts: int = Field(description="On-duty intervals that overlap the period.")
    seconds_outside_business_hours: int = Field(description="Weekends included.")
    seconds_on_weekends: int


class OnCallReportOut(BaseModel):
    since: datetime
    until: datetime
    time_zone: str
    rotation_id: uuid.UUID | None
    business_hours: str
    people: list[PersonOut]


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a time without a zone is UTC
    return value


@router.get(
    "/workspaces/{workspace_id}/on-call-report",
    response_model=OnCallReportOut,
    summary="Who was on duty, per person, over a period",
    description="Per person (member, or PagerDuty user no member matched): seconds on duty in "
    "[since, until), shifts, and the seconds outside business hours and on weekends in the "
    "workspace's time zone. `until` defaults to now, `since` to 30 days before `until`; at "
    "most 400 days. `rotation_id` keeps one rotation. `Accept: text/csv` answers the same rows "
    "as CSV. Primary Owner or Admin.",
    tags=["reports"],
    responses={
        **MANAGER_ERRORS,
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        400: _err(
            "`since` is not before `until` (`invalid_period`) or the period is longer "
            "than 400 days (`period_too_long`)."
        ),
        404: _err("`rotation_id` is not a rotation of this workspace (`rotation_not_found`)."),
    },
)
def get_on_call_report(
    request: Request,
    actor: WorkspaceManager,
    since: Annotated[
        datetime | None, Query(description="ISO 8601 instant (UTC if no zone).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="ISO 8601 instant (UTC if no zone).")
    ] = None,
    rotation_id: uuid.UUID | None = None,
) -> Any:
    with snapshot() as session:
        report = on_call.on_call_report(
            session,
            actor,
            since=_utc(since),
            until=_utc(until),
            rotation_id=rotation_id,
            now=utcnow(),
        )
    if "text/csv" in request.headers.get("accept", ""):
        stamp = f"{report.since:%Y%m%dT%H%M%SZ}-{report.until:%Y%m%dT%H%M%SZ}"
        return Response(
            on_call.csv_text(report),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="on-call-report-{stamp}.csv"',
                "X-Report-Since": report.since.isoformat(),
                "X-Report-Until": report.until.isoformat(),
                "X-Report-Time-Zone": report.time_zone,
            },
        )
    return OnCallReportOut.model_validate(report.document())


@router.get(
    "/workspaces/{workspace_id}/settings",
    response_model=SettingsOut,
    summary="The workspace's settings",
    description="The time zone of the on-call report. Any member of the workspace.",
    tags=["reports"],
    responses=AUTH_ERRORS,
)
def get_workspace_settings(actor: WorkspaceActor) -> SettingsOut:
    with snapshot() as session:
        return SettingsOut(time_zone=zone.workspace_zone(session, actor.workspace_id))


@router.put(
    "/workspaces/{workspace_id}/settings",
    response_model=SettingsOut,
    summary="Set the workspace's time zone",
    description="`time_zone` must be an IANA name (`Europe/Paris`); an unknown one answers 422 "
    "`unknown_time_zone`. Primary Owner or Admin.",
    tags=["reports"],
    responses=BODY_ERRORS,
    openapi_extra=body_doc(SettingsRequest),
)
def put_settings(
    actor: WorkspaceManager,
    body: Annotated[SettingsRequest, Depends(json_body(SettingsRequest))],
) -> SettingsOut:
    with transaction() as session:
        return SettingsOut(time_zone=zone.set_workspace_zone(session, actor, body.time_zone))

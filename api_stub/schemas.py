"""Request and response models (they also write the OpenAPI document).

The read models of the connection status and of rotations (``StatusOut``, ``RotationOut`` and
what they hold) are built where their data is read, in ``workers.connections.status`` and
``workers.rotations.views``: they are these endpoints' response schemas themselves."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers.connections.setup import normalize_api_key
from workers.connections.status import PendingOut
from workers.core.access import Invalid, ServiceError
from workers.rotations.views import RotationOut

Region = Literal["us", "eu"]
REGION_HELP = (
    "The PagerDuty service region of the account: `us` (the default) for accounts at "
    "<subdomain>.pagerduty.com, `eu` for accounts at <subdomain>.eu.pagerduty.com. A key sent "
    "to the other region is rejected as if it were wrong."
)

# C0 and C1 controls (NUL among them: PostgreSQL refuses it in text, so it used to reach the
# database and come back as a 500) and unpaired surrogates (which cannot be encoded to UTF-8).
# None belongs in an id, a search or a credential.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def control_message(field: str) -> str:
    return f"{field} must not contain control characters (such as NUL)."


def control_free(field: str) -> Callable[[str | None], str | None]:
    """A validator (``AfterValidator``) refusing control characters in ``field``."""

    def check(value: str | None) -> str | None:
        if value is not None and has_control_characters(value):
            raise ValueError(control_message(field))
        return value

    return check


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKeyRequest(_Request):
    api_key: str = Field(
        description="A PagerDuty REST API key (read-only is enough), 16-128 printable "
        "characters without spaces.",
        json_schema_extra={"writeOnly": True},
    )
    region: Region = Field("us", description=REGION_HELP)

    @field_validator("api_key")
    @classmethod
    def _shape(cls, value: str) -> str:
        try:
            return normalize_api_key(value)
        except Invalid as exc:
            raise ValueError(exc.message) from None


class OAuthStartRequest(_Request):
    client_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Your Scoped OAuth app's id. Omit it and `client_secret` to log in again "
        "with the app stored on the workspace's OAuth connection.",
    )
    client_secret: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Your Scoped OAuth app's secret (stored encrypted). Omitted with "
        "`client_id`: the stored one.",
        json_schema_extra={"writeOnly": True},
    )
    # The login's region is only what the admin chose: the id_token names the account's.
    region: Region = Field("us", description=REGION_HELP)

    @field_validator("client_id", "client_secret")
    @classmethod
    def _no_control(cls, value: str | None, info: object) -> str | None:
        field = getattr(info, "field_name", "value")
        if value is not None and has_control_characters(value):
            raise ValueError(control_message(field))
        return value


class BindRequest(_Request):
    """One of ``schedule_id`` (one schedule) or ``schedule_ids`` (1 to 10), not both."""

    schedule_id: str | None = Field(
        None, min_length=1, max_length=64, description="PagerDuty schedule id, e.g. PABC123."
    )
    schedule_ids: list[str] | None = Field(
        None,
        description="1 to 10 distinct PagerDuty schedule ids: the rotation follows all of them "
        "(members: the union; on duty: everyone on call in any). The first is `schedule`.",
    )

    @field_validator("schedule_id")
    @classmethod
    def _no_control(cls, value: str | None) -> str | None:
        if value is not None and has_control_characters(value):
            raise ValueError(control_message("schedule_id"))
        return value

    @field_validator("schedule_ids")
    @classmethod
    def _no_control_in_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(has_control_characters(v) for v in value):
            raise ValueError(control_message("schedule_ids"))
        return value

    def wanted(self) -> str | list[str]:
        """The schedules asked for: exactly one of the two keys (both: 400; neither: 422)."""
        if self.schedule_id is None and self.schedule_ids is None:
            raise Invalid(
                "schedule_id (one schedule) or schedule_ids (1 to 10) is required.",
                code="invalid_request",
            )
        if self.schedule_id is not None and self.schedule_ids is not None:
            raise ServiceError(
                "Give either schedule_id (one schedule) or schedule_ids (1 to 10), not both.",
                code="schedule_id_or_schedule_ids",
            )
        return self.schedule_id if self.schedule_id is not None else list(self.schedule_ids or [])


class ConnectionOut(BaseModel):
    id: uuid.UUID
    status: str
    auth_method: str
    region: str
    generation: int
    status_changed_at: datetime


class ConnectAccepted(BaseModel):
    connection: ConnectionOut
    task_id: str = Field(description="Poll GET /v1/tasks/{task_id} or the status endpoint.")
    pending: PendingOut | None = Field(
        None,
        description="Set when the new key waits beside the live one of a connected connection "
        "(which stays connected) until its check proves it.",
    )


class RotationRef(BaseModel):
    id: uuid.UUID
    name: str


class DisconnectAccepted(ConnectAccepted):
    rotations_to_manual: list[RotationRef] = Field(
        description="The PagerDuty-bound rotations this disconnect makes Manual."
    )
    revoke_in_pagerduty: str = Field(
        description="What the admin can do in PagerDuty: our copies of the credentials are "
        "deleted, but PagerDuty has no API to revoke OAuth tokens, and an API key works until "
        "it is deleted in PagerDuty."
    )


class TaskAccepted(BaseModel):
    task_id: str


class OAuthStartOut(BaseModel):
    authorization_url: str = Field(description="Send the admin's browser here.")
    expires_at: datetime = Field(description="The login must finish before this moment.")


class ScheduleOut(BaseModel):
    id: str = Field(description="PagerDuty schedule id.")
    name: str
    time_zone: str | None
    version: str
    member_count: int
    synced_at: datetime


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    total: int
    limit: int
    offset: int


class RotationList(BaseModel):
    rotations: list[RotationOut]


class BindAccepted(BaseModel):
    rotation: RotationOut
    task_id: str


class AuditEventOut(BaseModel):
    id: uuid.UUID
    at: datetime
    action: str = Field(description="What happened, e.g. `pagerduty.connected`.")
    actor: str = Field(description="`member`, `system` or `operator` (an `rrpd` command).")
    actor_member_id: uuid.UUID | None
    actor_name: str | None
    actor_email: str | None
    details: dict[str, Any] = Field(description="Plain values (ids, outcomes); never a secret.")


class AuditPage(BaseModel):
    events: list[AuditEventOut] = Field(description="Newest first.")
    next_before: datetime | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class TaskOut(BaseModel):
    task_id: str
    task_name: str
    state: str = Field(description="Celery state: PENDING, STARTED, RETRY, SUCCESS, FAILURE...")
    created_at: datetime


REQUEST_MODELS: tuple[type[BaseModel], ...] = (ApiKeyRequest, OAuthStartRequest, BindRequest)

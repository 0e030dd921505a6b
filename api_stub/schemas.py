"""Request and response models (they also write the OpenAPI document)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers.connections.setup import normalize_api_key
from workers.core.access import Invalid

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
    schedule_id: str = Field(
        min_length=1, max_length=64, description="PagerDuty schedule id, e.g. PABC123."
    )

    @field_validator("schedule_id")
    @classmethod
    def _no_control(cls, value: str) -> str:
        if has_control_characters(value):
            raise ValueError(control_message("schedule_id"))
        return value


class ConnectionOut(BaseModel):
    id: uuid.UUID
    status: str
    auth_method: str
    region: str
    generation: int
    status_changed_at: datetime


class PendingAccountOut(BaseModel):
    subdomain: str = Field(description="The new key's PagerDuty account.", examples=["euco"])
    previous_subdomain: str = Field(description="The connected account.", examples=["acme"])


class PendingRotationOut(BaseModel):
    rotation_id: uuid.UUID
    name: str
    schedule_id: str | None
    schedule_name: str | None = Field(description="As mirrored from the connected account.")
    outcome: str = Field(description="stays_bound or made_manual.")


class PendingOut(BaseModel):
    """A new credential checked beside the live one of a connected connection."""

    status: str = Field(description="checking, rejected, lost or account_change.")
    message: str = Field(
        examples=["The new key was rejected; Round Robin still uses the previous one."]
    )
    since: datetime = Field(description="When the new credential was entered.")
    auth_method: str = Field(description="api_key.")
    region: str | None = Field(description="The region chosen for the new credential.")
    account: PendingAccountOut | None = Field(
        None, description="For `account_change`: the new account, and the connected one."
    )
    rotations: list[PendingRotationOut] | None = Field(
        None,
        description="For `account_change`: what confirming the switch does to each bound rotation.",
    )


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


class PersonOut(BaseModel):
    member_id: uuid.UUID
    name: str
    email: str


class SyncRunOut(BaseModel):
    status: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    rows_created: int
    rows_updated: int
    rows_deleted: int
    requests_made: int
    error: str | None


class ActingUserOut(BaseModel):
    pagerduty_user_id: str = Field(description="The PagerDuty user id the login acts as.")
    name: str | None = Field(description="As PagerDuty's /users/me named them at connect.")
    email: str | None
    role: str | None = Field(
        description="Their PagerDuty role at connect (owner, admin, user, limited_user, "
        "observer, read_only_user, ...); null when PagerDuty did not say.",
        examples=["user"],
    )
    sees_everything: bool | None = Field(
        description="Whether that role sees every schedule and user of the account (owner, "
        "admin); null when the role is unknown."
    )


class StatusOut(BaseModel):
    status: str = Field(
        description="not_connected, validating, connected, needs_reauth, invalid or disconnecting."
    )
    status_message: str = Field(description="The status in plain words.")
    connection_id: uuid.UUID | None
    auth_method: str | None
    region: str | None
    account_subdomain: str | None
    key_level: str | None
    connected_by: PersonOut | None
    connected_at: datetime | None
    status_changed_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_synced_at: datetime | None
    last_sync: SyncRunOut | None
    user_count: int = Field(description="PagerDuty users mirrored.")
    schedule_count: int = Field(description="PagerDuty schedules mirrored.")
    linked_users: int = Field(description="Mirrored users matched to a workspace member.")
    total_users: int = Field(description="Active PagerDuty users mirrored.")
    inactive_users: int = Field(
        0, description="Deleted PagerDuty users that schedules still name (never linkable)."
    )
    linked_summary: str = Field(examples=["3 of 5 users linked to members"])
    notice: str | None = Field(
        None,
        description="Something to know that is not an error, e.g. the API key worked in the "
        "other region than the one chosen, so the connection uses that region.",
    )
    acting_user: ActingUserOut | None = Field(
        None,
        description="The PagerDuty user an OAuth connection acts as, and their role; null for "
        "an API key.",
    )
    pending: PendingOut | None = Field(
        None,
        description="A new credential entered over the connected connection and its check: "
        "the live credentials keep serving until it is proven.",
    )


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


class MemberOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str


class BoundScheduleOut(BaseModel):
    id: str
    name: str | None = Field(description="None when the schedule is not (or no longer) mirrored.")
    missing: bool = Field(
        False,
        description="True when the last directory read did not find the schedule (deleted in "
        "PagerDuty, or not visible to this connection): the rotation keeps its last people.",
    )


class UnmatchedOut(BaseModel):
    pagerduty_user_id: str
    name: str | None
    email: str | None
    active: bool = Field(
        True,
        description="False: the user was deleted in PagerDuty but the schedule still names "
        "them (a placeholder); never linkable to a member.",
    )


class HandoffPersonOut(BaseModel):
    pagerduty_user_id: str
    name: str = Field(description="The member's name, else PagerDuty's name for the user.")
    member_id: uuid.UUID | None = Field(description="None: no member matches this user.")


class NextHandoffOut(BaseModel):
    at: datetime
    people: list[HandoffPersonOut] = Field(description="Who comes on duty (empty: nobody).")
    text: str = Field(description='For people: "Bob from 14:00 UTC".')


class RotationOut(BaseModel):
    id: uuid.UUID
    name: str
    mode: str
    schedule: BoundScheduleOut | None
    bound_at: datetime | None
    last_synced_at: datetime | None
    members: list[MemberOut]
    on_duty: list[MemberOut]
    unmatched_on_call: list[UnmatchedOut] = Field(
        description="People on call for the bound schedule with no matching member."
    )
    next_handoff: NextHandoffOut | None = Field(
        default=None,
        description="The bound schedule's next on-call change, if one is known within the "
        "hours the sync reads ahead; null otherwise.",
    )


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

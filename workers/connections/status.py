"""What the integrations page shows about a workspace's PagerDuty connection: the status read
model (``StatusOut``, the API's response schema too), built by ``connection_status``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    Member,
    PagerDutyConnection,
    PagerDutySchedule,
    PagerDutyUser,
    SyncRun,
)
from workers.connections import account_change
from workers.connections.account_change import PendingRotationOut
from workers.connections.acting_user import ActingUserOut, acting_user_document
from workers.connections.messages import NOT_CONNECTED_WORDS, STATUS_WORDS
from workers.core.connection_rows import live_connection
from workers.core.readmodel import ReadModel

NOT_CONNECTED = "not_connected"


class PersonOut(ReadModel):
    member_id: uuid.UUID
    name: str
    email: str


class SyncRunOut(ReadModel):
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


class PendingAccountOut(ReadModel):
    subdomain: str = Field(description="The new key's PagerDuty account.", examples=["euco"])
    previous_subdomain: str = Field(description="The connected account.", examples=["acme"])


class PendingOut(ReadModel):
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


class StatusOut(ReadModel):
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


class _UserCounts(NamedTuple):
    total: int = 0
    linked: int = 0
    inactive: int = 0

    def summary(self) -> str:
        words = f"{self.linked} of {self.total} users linked to members"
        return words + (f" ({self.inactive} inactive in PagerDuty)" if self.inactive else "")


def connection_status(session: Session, workspace_id: uuid.UUID) -> StatusOut:
    """What the integrations page shows; ``status`` ``not_connected`` (and nothing else known)
    when the workspace has no live connection. Every field is filled here, once."""
    conn = live_connection(session, workspace_id)
    users = _user_counts(session, conn)
    return StatusOut(
        status=conn.status if conn else NOT_CONNECTED,
        status_message=_status_words(conn),
        connection_id=conn.id if conn else None,
        auth_method=conn.auth_method if conn else None,
        region=conn.region if conn else None,
        account_subdomain=conn.pagerduty_subdomain if conn else None,
        key_level=conn.key_level if conn else None,
        connected_by=_connected_by(session, conn),
        connected_at=conn.connected_at if conn else None,
        status_changed_at=conn.status_changed_at if conn else None,
        last_error=conn.last_error if conn else None,
        last_error_at=conn.last_error_at if conn else None,
        last_synced_at=conn.last_synced_at if conn else None,
        last_sync=_last_sync(session, conn),
        user_count=users.total,
        schedule_count=_schedule_count(session, conn),
        linked_users=users.linked,
        total_users=users.total,
        inactive_users=users.inactive,
        linked_summary=users.summary(),
        notice=conn.notice if conn else None,
        acting_user=acting_user_document(session, conn) if conn else None,
        pending=pending_document(
            conn,
            account_change.rotation_plan(session, conn)
            if account_change.waits_for_confirmation(conn)
            else None,
        )
        if conn
        else None,
    )


def _status_words(conn: PagerDutyConnection | None) -> str:
    if conn is None:
        return NOT_CONNECTED_WORDS
    if conn.last_error and conn.status is not ConnectionStatus.CONNECTED:
        return conn.last_error
    return STATUS_WORDS.get(conn.status, conn.status)


def _connected_by(session: Session, conn: PagerDutyConnection | None) -> PersonOut | None:
    if conn is None or conn.connected_by_member_id is None:
        return None
    m = session.get(Member, conn.connected_by_member_id)
    return None if m is None else PersonOut(member_id=m.id, name=m.display_name, email=m.email)


def _last_sync(session: Session, conn: PagerDutyConnection | None) -> SyncRunOut | None:
    if conn is None:
        return None
    run = session.execute(
        select(SyncRun)
        .where(SyncRun.connection_id == conn.id)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if conn.last_checked_at is not None and (run is None or conn.last_checked_at > run.started_at):
        # A quiet scheduled check writes no run; the connection row keeps when it happened.
        return quiet_check(conn)
    # Every field is the run's column of the same name.
    return None if run is None else SyncRunOut.model_validate(run, from_attributes=True)


def _user_counts(session: Session, conn: PagerDutyConnection | None) -> _UserCounts:
    if conn is None:
        return _UserCounts()
    total, linked, inactive = session.execute(
        select(
            func.count().filter(PagerDutyUser.active),
            func.count(PagerDutyUser.member_id),
            func.count().filter(~PagerDutyUser.active),
        ).where(PagerDutyUser.connection_id == conn.id)
    ).one()
    return _UserCounts(total, linked, inactive)


def _schedule_count(session: Session, conn: PagerDutyConnection | None) -> int:
    if conn is None:
        return 0
    count: int = session.execute(
        select(func.count()).where(PagerDutySchedule.connection_id == conn.id)
    ).scalar_one()
    return count


def pending_document(
    conn: PagerDutyConnection, rotations: list[PendingRotationOut] | None = None
) -> PendingOut | None:
    """The pending credential's check as the admin reads it; never its secret. ``rotations``:
    for a change of account, what confirming it does to each bound rotation."""
    if conn.pending_status is None or conn.pending_since is None:
        return None
    # ``account`` and ``rotations`` only for a change of account, otherwise unset (the API
    # shows them null): ``rrpd status --json`` prints the fields set, as it always has.
    extra: dict[str, object] = {}
    if rotations is not None and conn.pending_account:
        extra["account"] = PendingAccountOut(
            subdomain=conn.pending_account.get("subdomain"),
            previous_subdomain=conn.pending_account.get("previous_subdomain"),
        )
        extra["rotations"] = rotations
    return PendingOut(
        status=conn.pending_status,
        message=conn.pending_message or "",
        since=conn.pending_since,
        auth_method=conn.pending_auth_method or "api_key",
        region=conn.pending_region,
        **extra,
    )


def quiet_check(conn: PagerDutyConnection) -> SyncRunOut:
    """The last quiet check as the API's ``last_sync`` shows a run: it succeeded, changed no
    row, and made ``last_check_requests`` PagerDuty requests."""
    started = conn.last_checked_at
    assert started is not None
    duration_ms = conn.last_check_ms
    return SyncRunOut(
        status="succeeded",
        kind="scheduled",
        started_at=started,
        finished_at=started + timedelta(milliseconds=duration_ms or 0),
        duration_ms=duration_ms,
        rows_created=0,
        rows_updated=0,
        rows_deleted=0,
        requests_made=conn.last_check_requests or 0,
        error=None,
    )

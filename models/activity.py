"""What happened: sync runs, audit events, and which API caller enqueued which task."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UUIDPrimaryKey, utcnow, values_in
from models.types import string_enum


class SyncKind(StrEnum):
    """Why a sync ran: the ``kind`` a task is sent with and its run is recorded as."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    INITIAL = "initial"
    BINDING = "binding"


class SyncRunStatus(StrEnum):
    """How a recorded sync ended. A run is written once, when it ends: there is no "running"
    row (what is running is the connection's lease, not a row)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SyncRun(UUIDPrimaryKey, Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint(values_in("status", SyncRunStatus), name="status"),
        CheckConstraint(values_in("kind", SyncKind), name="kind"),
        Index("ix_sync_runs_connection_started", "connection_id", "started_at"),
        # The retention loop's "oldest first, across connections" (workers.sync.retention).
        Index("ix_sync_runs_started", "started_at"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE")
    )
    generation: Mapped[int]
    kind: Mapped[SyncKind] = mapped_column(string_enum(SyncKind, 20))
    status: Mapped[SyncRunStatus] = mapped_column(string_enum(SyncRunStatus, 12))
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    rows_created: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_deleted: Mapped[int] = mapped_column(default=0)
    requests_made: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class AuditAction(StrEnum):
    """Every action the audit trail may hold (what each records: ``workers.core.audit.ACTIONS``,
    the same as docs/api.md). Stored as its value, as before; no other string is written."""

    CONNECT_API_KEY = "pagerduty.connect.api_key"
    CONNECT_OAUTH_STARTED = "pagerduty.connect.oauth_started"
    CONNECT_OAUTH = "pagerduty.connect.oauth"
    CONNECT_OAUTH_DENIED = "pagerduty.connect.oauth_denied"
    CONNECT_OAUTH_FAILED = "pagerduty.connect.oauth_failed"
    CONNECTED = "pagerduty.connected"
    INVALID = "pagerduty.invalid"
    PENDING_ACCEPTED = "pagerduty.pending.accepted"
    PENDING_REJECTED = "pagerduty.pending.rejected"
    PENDING_LOST = "pagerduty.pending.lost"
    PENDING_ACCOUNT_CHANGE = "pagerduty.pending.account_change"
    PENDING_ACCOUNT_CHANGE_CONFIRMED = "pagerduty.pending.account_change_confirmed"
    PENDING_ACCOUNT_CHANGE_EXPIRED = "pagerduty.pending.account_change_expired"
    PENDING_DISCARDED = "pagerduty.pending.discarded"
    SYNC_REQUESTED = "pagerduty.sync.requested"
    DISCONNECT_REQUESTED = "pagerduty.disconnect.requested"
    DISCONNECTED = "pagerduty.disconnected"
    ROTATION_BIND = "rotation.pagerduty.bind"
    ROTATION_UNBIND = "rotation.pagerduty.unbind"
    ROTATION_MADE_MANUAL = "rotation.pagerduty.made_manual"
    WORKSPACE_TIME_ZONE = "workspace.time_zone"


class AuditEvent(UUIDPrimaryKey, Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_workspace_created", "workspace_id", "created_at"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    actor_member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None
    )
    # "member", "system" or the name of the service that acted.
    actor: Mapped[str] = mapped_column(String(100), default="member")
    action: Mapped[AuditAction] = mapped_column(string_enum(AuditAction, 100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskRecord(Base):
    """Which workspace a task was enqueued for, so GET /v1/tasks/{id} shows callers only theirs."""

    __tablename__ = "task_records"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    task_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

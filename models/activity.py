"""What happened: sync runs, audit events, and which API caller enqueued which task."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UUIDPrimaryKey, utcnow


class SyncRun(UUIDPrimaryKey, Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed', 'skipped')", name="status"),
        Index("ix_sync_runs_connection_started", "connection_id", "started_at"),
        # The retention loop's "oldest first, across connections" (workers.sync.retention).
        Index("ix_sync_runs_started", "started_at"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE")
    )
    generation: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))  # scheduled | manual | initial | binding
    status: Mapped[str] = mapped_column(String(12), default="running")
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    rows_created: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_deleted: Mapped[int] = mapped_column(default=0)
    requests_made: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class AuditEvent(UUIDPrimaryKey, Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_workspace_created", "workspace_id", "created_at"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    actor_member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None
    )
    # "member", "system" or the name of the service that acted.
    actor: Mapped[str] = mapped_column(String(100), default="member")
    action: Mapped[str] = mapped_column(String(100))
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

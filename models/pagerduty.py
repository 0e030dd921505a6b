"""PagerDuty data mirrored per connection, keyed by (connection, PagerDuty id)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UUIDPrimaryKey, utcnow


class PagerDutyUser(UUIDPrimaryKey, Base):
    """A PagerDuty user. Inactive: deleted in PagerDuty but still named by a schedule (a
    placeholder); never linked to a member, whatever its old email."""

    __tablename__ = "pagerduty_users"
    __table_args__ = (
        Index("uq_pagerduty_users_connection_pd", "connection_id", "pagerduty_id", unique=True),
        Index("ix_pagerduty_users_email_key", "connection_id", "email_key"),
        CheckConstraint("active OR member_id IS NULL", name="inactive_unlinked"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE")
    )
    pagerduty_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    # None for a placeholder: PagerDuty no longer says who a deleted user was.
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    email_key: Mapped[str | None] = mapped_column(String(320), default=None)
    time_zone: Mapped[str | None] = mapped_column(String(64), default=None)
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None, index=True
    )
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PagerDutySchedule(UUIDPrimaryKey, Base):
    __tablename__ = "pagerduty_schedules"
    __table_args__ = (
        Index("uq_pagerduty_schedules_connection_pd", "connection_id", "pagerduty_id", unique=True),
        CheckConstraint("version IN ('v2', 'v3')", name="version"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE")
    )
    pagerduty_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    time_zone: Mapped[str | None] = mapped_column(String(64), default=None)
    version: Mapped[str] = mapped_column(String(4), default="v2")
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PagerDutyScheduleMember(Base):
    __tablename__ = "pagerduty_schedule_members"
    __table_args__ = (
        ForeignKeyConstraint(["connection_id"], ["pagerduty_connections.id"], ondelete="CASCADE"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    schedule_pagerduty_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_pagerduty_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)


class PagerDutyOnCall(Base):
    """Who is on call now for a schedule, as of the last successful sync."""

    __tablename__ = "pagerduty_oncalls"
    __table_args__ = (
        ForeignKeyConstraint(["connection_id"], ["pagerduty_connections.id"], ondelete="CASCADE"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    schedule_pagerduty_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_pagerduty_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    ends_at: Mapped[datetime | None] = mapped_column(default=None)

"""Who was on duty in each rotation, interval by interval: the on-call report's history.

``workers.rotations.on_call.write_on_call`` (the one writer of who is on call) opens and ends
these rows in the same transaction as the on-duty change, at the instant it took effect. A
person is a workspace member (``member_id``) or, for a PagerDuty user on call whom no member
matches, that user (``pagerduty_user_id``); ``name``/``email`` are copied when the interval
opens so the report still names someone deleted since. ``ended_at`` NULL: still on duty.
Retention: ``RRPD_ON_DUTY_HISTORY_DAYS`` (``workers.reports.retention``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")


class OnDutyInterval(Base):
    __tablename__ = "on_duty_intervals"
    __table_args__ = (
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        CheckConstraint("source IN ('sync', 'handoff', 'backfill')", name="source"),
        # One open interval per rotation and person (a partial unique index on both databases).
        Index(
            "uq_on_duty_intervals_open_member",
            "rotation_id",
            "member_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL AND member_id IS NOT NULL"),
            sqlite_where=text("ended_at IS NULL AND member_id IS NOT NULL"),
        ),
        Index(
            "uq_on_duty_intervals_open_user",
            "rotation_id",
            "pagerduty_user_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL AND pagerduty_user_id IS NOT NULL"),
            sqlite_where=text("ended_at IS NULL AND pagerduty_user_id IS NOT NULL"),
        ),
        # The report reads a workspace's intervals that start before the period's end.
        Index("ix_on_duty_intervals_report", "workspace_id", "started_at"),
        # Retention deletes those ended before the cut-off; the writer reads a rotation's open ones.
        Index("ix_on_duty_intervals_ended_at", "ended_at"),
        Index("ix_on_duty_intervals_rotation", "rotation_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # A deleted rotation's history goes with it.
    rotation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"))
    # A deleted member's intervals stay, named by ``name``/``email``.
    member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None, index=True
    )
    # Set only for a PagerDuty user on call whom no member matches.
    pagerduty_user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    # What opened it: the sync (an override, a schedule edit, a first sync), a planned handoff,
    # or the migration that started the history from who was on duty then.
    source: Mapped[str] = mapped_column(String(16))

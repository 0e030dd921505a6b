"""Scheduled handoffs: who comes on call for a bound rotation at a future instant.

Written by the sync's apply from PagerDuty's rendered on-call (the next hours), applied by the
``handoffs`` worker loop when due (``workers.handoffs``). A row names PagerDuty user ids, not
members: they are matched to members when the row is applied, so a member who joins the
workspace between the sync and the instant still matches. The row also carries those users'
shifts, so that applying it sets the on-call mirror exactly as the next sync would.
``connection_id`` + ``generation`` fence the row: after a disconnect or a reconnect (new
generation) it is discarded, not applied.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class ScheduledHandoff(Base):
    __tablename__ = "scheduled_handoffs"
    __table_args__ = (
        # One on-call set per rotation, schedule and instant: a re-plan replaces, never
        # duplicates. Per schedule: a rotation following two schedules has both timelines.
        UniqueConstraint("rotation_id", "schedule_id", "at"),
        CheckConstraint("generation >= 1", name="generation_positive"),
        # The loop reads the earliest due rows.
        Index("ix_scheduled_handoffs_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    rotation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE"), index=True
    )
    generation: Mapped[int] = mapped_column()
    schedule_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    # PagerDuty user ids on call from ``at`` (possibly empty: nobody).
    user_ids: Mapped[list[str]] = mapped_column(JSON)
    # The same people's shifts, ``[user id, start, end]`` (ISO instants, None: open), which the
    # on-call mirror (``pagerduty_oncalls``) holds from ``at``. None: planned before 0007.
    shifts: Mapped[list[list[str | None]] | None] = mapped_column(JSON, default=None)
    planned_at: Mapped[datetime] = mapped_column(default=utcnow)

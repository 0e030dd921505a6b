"""A bound rotation's planned on-duty intervals for the next days ("your shift moved").

Written by the sync's apply from the upcoming read (a bound schedule's on-call over
``[read_from, read_until)``, 7 days, ``workers.sync.upcoming``): one row per bound rotation,
the PagerDuty user ids with their on-call intervals, merged per person and clipped to the
window. The next upcoming read is compared with it; a difference is published as
``rotation.upcoming_changed``. ``connection_id`` + ``generation`` fence the row as they fence
``scheduled_handoffs``: a row of another connection or generation is a baseline, never compared.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class RotationUpcoming(Base):
    __tablename__ = "rotation_upcoming"
    __table_args__ = (
        CheckConstraint("generation >= 1", name="generation_positive"),
        CheckConstraint("read_until > read_from", name="window_not_empty"),
    )

    rotation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True
    )
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE"), index=True
    )
    generation: Mapped[int] = mapped_column()
    schedule_id: Mapped[str] = mapped_column(String(64))
    read_from: Mapped[datetime] = mapped_column()
    read_until: Mapped[datetime] = mapped_column()
    # ``[PagerDuty user id, start, end]`` (ISO instants, UTC), in the window, merged per person.
    intervals: Mapped[list[list[str]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

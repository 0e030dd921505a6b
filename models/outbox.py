"""The transactional outbox: what must be published once the transaction that caused it commits.

A row is written in the same transaction as the change that causes it (a task to run, an event
other services consume) and relayed after commit by ``workers.outbox.relay``; a rolled-back
transaction leaves no row, a committed one is never lost. See docs/design.md ("The outbox").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.types import string_enum

# A BIGINT identity on PostgreSQL; SQLite's INTEGER PRIMARY KEY (its rowid) is 64-bit already.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxKind(StrEnum):
    TASK = "task"
    EVENT = "event"


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint("kind IN ('task', 'event')", name="kind"),
        # What the relay reads: the unpublished rows of one lane, in id order.
        Index(
            "ix_outbox_messages_unpublished",
            "lane",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # Retention deletes published rows by age; replay reads events by time.
        Index("ix_outbox_messages_published_at", "published_at"),
        Index("ix_outbox_messages_kind_created", "kind", "created_at"),
    )

    # Monotonic: the relay publishes a lane in id order, which keeps each key's order.
    id: Mapped[int] = mapped_column(BigId, Identity(), primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(string_enum(OutboxKind, 8))
    # Relayed separately, so a burst of sync tasks never holds up an interactive one:
    # a task's queue (`interactive`, `sync`), or `events`.
    lane: Mapped[str] = mapped_column(String(16))
    # The task name, or the event type.
    name: Mapped[str] = mapped_column(String(100))
    # Events of one key (rotation or connection id) are published in the order they were made.
    ordering_key: Mapped[str | None] = mapped_column(String(80), default=None)
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Task: {"task_id", "kwargs", "countdown"?}; event: the event document itself.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class OutboxSequence(Base):
    """The last ``sequence`` given to an event of one ordering key (a rotation, a connection).

    Taken with an upsert in the transaction that writes the event: the row lock it holds until
    commit orders the transactions of one key, so sequence order, id order and commit order
    agree.
    """

    __tablename__ = "outbox_sequences"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)

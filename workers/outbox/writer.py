"""Writing to the outbox, in the caller's transaction.

``add_task`` and ``add_event`` insert one ``outbox_messages`` row each, in the transaction that
makes the change; nothing is published here. Once that transaction commits, the relay
(``workers.outbox.relay``) is woken for the lanes written (the fast path); the relay loop of
every worker node publishes whatever the fast path missed. A rolled-back transaction leaves no
row, so nothing is ever published for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import OutboxKind, OutboxMessage, OutboxSequence, utcnow
from workers.core.db import after_commit, pending_after_commit
from workers.outbox.event_schema import document
from workers.outbox.lanes import EVENTS_LANE
from workers.tasking.contract import TaskSpec


class _Wake:
    """After commit: wake the relay for the lanes this transaction wrote (once per commit)."""

    def __init__(self) -> None:
        self.lanes: set[str] = set()

    def __call__(self) -> None:
        from workers.outbox.fastpath import kick

        kick(self.lanes)


def _wake_after_commit(session: Session, lane: str) -> None:
    wake = next((fn for fn in pending_after_commit(session) if isinstance(fn, _Wake)), None)
    if wake is None:
        wake = _Wake()
        after_commit(session, wake)
    wake.lanes.add(lane)


def add_task(
    session: Session,
    spec: TaskSpec,
    *,
    task_id: str,
    kwargs: dict[str, Any],
    countdown: float | None = None,
    workspace_id: uuid.UUID | None = None,
) -> None:
    """Publish ``spec(**kwargs)`` under ``task_id`` once ``session`` commits (``kwargs`` are
    already checked against the contract)."""
    payload: dict[str, Any] = {"task_id": task_id, "kwargs": kwargs}
    if countdown:
        payload["countdown"] = round(float(countdown), 3)
    session.execute(
        insert(OutboxMessage).values(
            kind=OutboxKind.TASK,
            lane=spec.queue,
            name=spec.name,
            ordering_key=None,
            workspace_id=workspace_id,
            payload=payload,
            created_at=utcnow(),
            attempts=0,
        )
    )
    _wake_after_commit(session, spec.queue)


def next_sequence(session: Session, key: str) -> int:
    """The next ``sequence`` of ``key``'s events (1, 2, ...), taken in this transaction.

    The upsert locks the key's row until commit: a second transaction writing an event of the
    same key waits here, so it gets both the next sequence and a higher outbox id.
    """
    dialect = session.get_bind().dialect.name
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(OutboxSequence)
    stmt = (
        upsert.values(key=key, value=1)
        .on_conflict_do_update(
            index_elements=[OutboxSequence.key], set_={"value": OutboxSequence.value + 1}
        )
        .returning(OutboxSequence.value)
    )
    return int(session.execute(stmt).scalar_one())


def add_event(
    session: Session,
    *,
    type: str,
    key: str,
    workspace_id: uuid.UUID,
    occurred_at: datetime,
    subject: dict[str, str],
    data: dict[str, Any],
) -> dict[str, Any]:
    """Write one event (``workers.events`` builds the arguments); returns the document."""
    doc = document(
        type=type,
        sequence=next_sequence(session, key),
        workspace_id=workspace_id,
        occurred_at=occurred_at,
        subject=subject,
        data=data,
    )
    session.execute(
        insert(OutboxMessage).values(
            kind=OutboxKind.EVENT,
            lane=EVENTS_LANE,
            name=type,
            ordering_key=key,
            workspace_id=workspace_id,
            payload=doc,
            created_at=utcnow(),
            attempts=0,
        )
    )
    _wake_after_commit(session, EVENTS_LANE)
    return doc

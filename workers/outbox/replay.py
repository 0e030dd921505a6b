"""Publish again what the outbox published since a moment (``rrpd outbox replay``,
``rrpd events replay``).

For a consumer that was down longer than the stream keeps events, or after Redis lost its data
(a restart without persistence): the published rows the database still keeps
(``RRPD_EVENTS_RETENTION_DAYS`` for events, ``RRPD_OUTBOX_TASK_RETENTION_HOURS`` for tasks) are
published again in their original order, events with their original ids and sequences, tasks
under their original task ids (tasks are idempotent; consumers de-duplicate events by id).
Rows are not changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from models import OutboxKind, OutboxMessage
from workers.core.db import transaction

BATCH = 500


@dataclass
class Replayed:
    events: int = 0
    tasks: int = 0


def replay(
    since: datetime,
    until: datetime | None = None,
    *,
    kinds: tuple[OutboxKind, ...] = (OutboxKind.EVENT,),
    workspace_id: uuid.UUID | None = None,
) -> Replayed:
    from workers.outbox import event_stream as stream
    from workers.outbox import publisher

    out = Replayed()
    last_id = 0
    while True:
        query = (
            select(OutboxMessage)
            .where(
                OutboxMessage.id > last_id,
                OutboxMessage.published_at.is_not(None),
                OutboxMessage.created_at >= since,
                OutboxMessage.kind.in_(kinds),
            )
            .order_by(OutboxMessage.id)
            .limit(BATCH)
        )
        if until is not None:
            query = query.where(OutboxMessage.created_at < until)
        if workspace_id is not None:
            query = query.where(OutboxMessage.workspace_id == workspace_id)
        with transaction() as session:
            rows = list(session.scalars(query))
        if not rows:
            return out
        last_id = rows[-1].id
        events = [(r.payload, r.ordering_key) for r in rows if r.kind == OutboxKind.EVENT]
        tasks = [
            (r.name, r.payload["kwargs"], r.payload["task_id"], None)
            for r in rows
            if r.kind == OutboxKind.TASK
        ]
        if events:
            out.events += stream.append(events)
        if tasks:
            out.tasks += publisher.send_many(tasks)

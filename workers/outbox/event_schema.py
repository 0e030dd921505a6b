"""The event document: versioned, identified, ordered per key.

Every event other Round Robin services consume has this shape (``docs/events.schema.json`` is
its JSON Schema; ``docs/events.md`` documents each type with an example)::

    {"schema": "rr.pagerduty.event/v1", "id": "<uuid>", "type": "rotation.on_duty.changed",
     "occurred_at": "2026-12-03T14:00:00.000000Z", "workspace_id": "<uuid>",
     "rotation_id": "<uuid>", "connection_id": "<uuid>", "sequence": 7, "data": {...}}

``id`` is fixed when the event is written (a re-publish after a relay crash, or a replay,
carries the same id: de-duplicate on it). ``sequence`` counts the events of one *key* - the
rotation for ``rotation.*`` events, the connection for ``connection.*`` ones - from 1 without
gaps, in the order they happened. A later schema version that changes the meaning of a field
gets a new ``schema`` value; adding fields does not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

SCHEMA = "rr.pagerduty.event/v1"

ROTATION_ON_DUTY_CHANGED = "rotation.on_duty.changed"
ROTATION_MEMBERS_CHANGED = "rotation.members.changed"
ROTATION_BOUND = "rotation.bound"
ROTATION_MADE_MANUAL = "rotation.made_manual"
CONNECTION_STATUS_CHANGED = "connection.status.changed"
ROTATION_UPCOMING_CHANGED = "rotation.upcoming_changed"
TYPES = (
    ROTATION_ON_DUTY_CHANGED,
    ROTATION_MEMBERS_CHANGED,
    ROTATION_UPCOMING_CHANGED,
    ROTATION_BOUND,
    ROTATION_MADE_MANUAL,
    CONNECTION_STATUS_CHANGED,
)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document(
    *,
    type: str,
    sequence: int,
    workspace_id: uuid.UUID,
    occurred_at: datetime,
    subject: dict[str, str],
    data: dict[str, Any],
) -> dict[str, Any]:
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}")
    return {
        "schema": SCHEMA,
        "id": str(uuid.uuid4()),
        "type": type,
        "occurred_at": timestamp(occurred_at),
        "workspace_id": str(workspace_id),
        **subject,
        "sequence": sequence,
        "data": data,
    }

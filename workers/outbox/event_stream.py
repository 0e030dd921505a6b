"""The transport: one Redis stream, read by consumer groups.

Why a Redis stream: Redis is already the broker every process reaches (no new service to run),
a stream keeps entries after they are read (unlike a queue or pub/sub), so any number of
consumer groups - one per consuming service - read it independently and at their own pace;
``XREADGROUP`` + ``XACK`` give at-least-once delivery with a per-consumer pending list that
survives the consumer's death (``XAUTOCLAIM`` hands a dead consumer's entries to another);
entries are ordered, and the relay appends them in outbox order, so each rotation's (and each
connection's) events appear in the order they happened. Celery messages on a named queue would
give each event to one reader only and nothing to replay from.

Entry fields: ``event`` (the JSON document, ``workers.outbox.event_schema``), and, so a consumer can
route without parsing, ``id``, ``type`` and ``key`` (``rotation:<id>`` or ``connection:<id>``).
Retention: every ``XADD`` trims entries older than ``RRPD_EVENTS_STREAM_RETENTION_HOURS``
(``MINID``, approximate); older events can be replayed from the outbox table
(``rrpd events replay --since``) for ``RRPD_EVENTS_RETENTION_DAYS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from workers.core.redis import client
from workers.core.settings import get_settings


def stream_key() -> str:
    return get_settings().effective_events_stream


def entry(doc: dict[str, Any], key: str | None) -> dict[str, str]:
    return {
        "id": str(doc["id"]),
        "type": str(doc["type"]),
        "key": key or "",
        "event": json.dumps(doc, separators=(",", ":"), sort_keys=True),
    }


def append(items: Iterable[tuple[dict[str, Any], str | None]]) -> int:
    """XADD each (document, key) in order, in one round trip; returns how many were added.

    Raises ``redis.RedisError`` if Redis did not take them all; the caller marks none of them
    published then (those that did get in are sent again later: at-least-once, same ids).
    """
    batch = list(items)
    if not batch:
        return 0
    settings = get_settings()
    cutoff_ms = int((time.time() - settings.events_stream_retention_hours * 3600) * 1000)
    pipe = client().pipeline(transaction=False)
    for doc, key in batch:
        pipe.xadd(stream_key(), entry(doc, key), minid=str(cutoff_ms), approximate=True)  # type: ignore[arg-type]
    pipe.execute()
    return len(batch)

"""How many rows ``/oncalls`` gave each bound schedule at a read's instant, per connection, in
Redis: the next on-call check packs its ``/oncalls`` batches by them so that a batch's rows fit
one page (``workers.pagerduty.window.pack``; the large account's 385 rows for 270 schedules
take 4 pages packed, 6 in batches of 100 ids).

Efficiency only, like the coalescing lease: a missing, expired or unreadable hash makes the
check ask in batches of 100 ids, as before, and its answer writes the hash again. A quiet check
costs one ``HGETALL``; a field is written only when a schedule's count changed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis

from workers.core import redis as shared_redis
from workers.pagerduty.snapshot import AccountSnapshot

log = logging.getLogger(__name__)

# A connection checked at least every few minutes refreshes it; one gone quiet lets it expire.
TTL_SECONDS = 2 * 24 * 3600


def _key(cid: uuid.UUID) -> str:
    return shared_redis.key("oncall-rows", str(cid))


def load(cid: uuid.UUID) -> dict[str, int] | None:
    """The counts last kept (None: none, or Redis unreachable)."""
    try:
        raw = shared_redis.client().hgetall(_key(cid))
    except redis.RedisError as exc:
        log.info("oncall row counts unavailable (%s): batches of 100 ids", exc)
        return None
    return {_text(k): int(v) for k, v in raw.items()} or None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def save(cid: uuid.UUID, kept: Mapping[str, int] | None, rows: Mapping[str, int]) -> None:
    """Keep the counts of ``rows`` that differ from ``kept``."""
    changed: dict[Any, Any] = {sid: n for sid, n in rows.items() if (kept or {}).get(sid) != n}
    if not changed:
        return
    try:
        pipe = shared_redis.client().pipeline(transaction=False)
        pipe.hset(_key(cid), mapping=changed)
        pipe.expire(_key(cid), TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        log.info("oncall row counts not kept (%s)", exc)


def packed(
    cid: uuid.UUID, read: Callable[[Mapping[str, int] | None], AccountSnapshot]
) -> AccountSnapshot:
    """``read`` (a check) with the kept counts as its hint; the counts it met are kept."""
    kept = load(cid)
    snapshot = read(kept)
    save(cid, kept, snapshot.oncall_rows)
    return snapshot

"""Redis locks and flags used for efficiency (single-flight, coalescing).

Correctness never depends on these: the database (row locks, conditional updates, generation
fencing) decides. A lost Redis lock costs at most duplicate work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from workers.core.redis import client, key

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@contextmanager
def try_lock(name: str, ttl_seconds: float) -> Iterator[bool]:
    """Yield True if this caller holds the lock, False if someone else does.

    The token check on release means a holder whose lock expired never deletes a successor's.
    """
    token = uuid.uuid4().hex
    lock_key = key("lock", name)
    acquired = bool(client().set(lock_key, token, nx=True, px=int(ttl_seconds * 1000)))
    try:
        yield acquired
    finally:
        if acquired:
            client().eval(_RELEASE, 1, lock_key, token)


@contextmanager
def wait_lock(name: str, ttl_seconds: float, wait_seconds: float) -> Iterator[bool]:
    """Like ``try_lock`` but waits up to ``wait_seconds`` for the holder to finish."""
    lock = client().lock(key("lock", name), timeout=ttl_seconds, blocking_timeout=wait_seconds)
    acquired = lock.acquire(blocking=True)
    try:
        yield acquired
    finally:
        if acquired:
            # Expired while we worked: harmless, the database stayed the source of truth.
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()


def set_flag(name: str, ttl_seconds: float) -> bool:
    """Set a flag if absent; True when this caller set it (used to coalesce requests)."""
    return bool(client().set(key("flag", name), "1", nx=True, px=int(ttl_seconds * 1000)))


def clear_flag(name: str) -> None:
    client().delete(key("flag", name))


def flag_set(name: str) -> bool:
    return bool(client().exists(key("flag", name)))

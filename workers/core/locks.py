"""Redis locks and flags used for efficiency (single-flight, coalescing).

Correctness never depends on these: the database (row locks, conditional updates, generation
fencing) decides. A lost Redis lock costs at most duplicate work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from models.clock import utcnow
from workers.core import metrics
from workers.core.redis import client, key

log = logging.getLogger(__name__)

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


# --- leases: a lock that lives only as long as its holder -----------------------------------------

# Extend only while the value is still ours: a holder whose lease lapsed and was taken over
# never extends (or deletes) the successor's.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease (for operators): ``holder`` is ``host:pid``."""

    name: str
    holder: str
    since: datetime
    until: datetime


class Lease:
    """A short Redis lease renewed by a heartbeat thread while its holder lives.

    A SIGKILLed holder stops renewing, so its lease lapses within ``ttl_seconds`` instead of
    blocking the work it guarded for a long fixed TTL. Renewal is a compare-and-set on the
    lease's token. ``lost`` turns True when a renewal finds the lease gone or taken over (a
    stalled holder): correctness never rests on it, the database fences the writes.
    """

    def __init__(
        self,
        name: str,
        ttl_seconds: float,
        *,
        renew_every: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """``stop``: the event the heartbeat waits on between renewals; a test passes one that
        wakes it on demand, so it renews without the test sleeping."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.name = name
        self.key = key("lock", name)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        # A third of the TTL: two renewals may fail (a Redis blip) before the lease lapses.
        self.renew_every = renew_every if renew_every is not None else ttl_seconds / 3
        started = utcnow().isoformat(timespec="seconds")
        self.value = f"{uuid.uuid4().hex}|{socket.gethostname()}:{os.getpid()}|{started}"
        self.lost = False
        self.renewals = 0
        self._stop = stop if stop is not None else threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not client().set(self.key, self.value, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"lease-{self.name}", daemon=True
        )
        self._thread.start()
        return True

    def renew(self) -> bool:
        """Extend the lease by its TTL if it is still ours; False (and ``lost``) otherwise."""
        ok = bool(client().eval(_RENEW, 1, self.key, self.value, self.ttl_ms))
        if ok:
            self.renewals += 1
        else:
            self.lost = True
        return ok

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if not self.renew():
                    log.warning("lease %s was lost (lapsed or taken over)", self.name)
                    metrics.incr("rrpd_lease_lost_total", lease=self.name.split(":", 1)[0])
                    return
            except redis.RedisError as exc:
                # Keep trying: the lease lapses by itself if Redis stays away.
                log.warning("lease %s not renewed (%s)", self.name, type(exc).__name__)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            client().eval(_RELEASE, 1, self.key, self.value)


@contextmanager
def hold_lease(name: str, ttl_seconds: float) -> Iterator[Lease | None]:
    """Yield the held ``Lease`` (renewed until the block ends), or None if someone holds it."""
    lease = Lease(name, ttl_seconds)
    if not lease.acquire():
        yield None
        return
    try:
        yield lease
    finally:
        lease.release()


def _parse_lease(name: str, raw: bytes | str | None, ttl_ms: int) -> LeaseInfo | None:
    if raw is None or ttl_ms < 0:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split("|")
    now = utcnow()
    try:
        since = datetime.fromisoformat(parts[2]) if len(parts) == 3 else now
    except ValueError:
        since = now
    holder = parts[1] if len(parts) == 3 else "unknown (a plain lock)"
    return LeaseInfo(name, holder, since, now + timedelta(milliseconds=ttl_ms))


def lease_info(name: str) -> LeaseInfo | None:
    """The current holder of lease ``name``, or None when it is free."""
    lease_key = key("lock", name)
    pipe = client().pipeline(transaction=False)
    pipe.get(lease_key)
    pipe.pttl(lease_key)
    raw, ttl_ms = pipe.execute()
    return _parse_lease(name, raw, int(ttl_ms))


def leases(prefix: str) -> list[LeaseInfo]:
    """Every held lease whose name starts with ``prefix`` (e.g. ``sync:``), soonest to lapse
    first."""
    base = key("lock", "")
    found = []
    for raw_key in client().scan_iter(match=f"{base}{prefix}*", count=500):
        name = (raw_key.decode() if isinstance(raw_key, bytes) else raw_key)[len(base) :]
        info = lease_info(name)
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda i: i.until)


def get_flag(name: str) -> str | None:
    raw = client().get(key("flag", name))
    return raw.decode() if isinstance(raw, bytes) else raw


def set_flag_value(name: str, value: str, ttl_seconds: float) -> bool:
    """Set a flag holding ``value`` if absent; True when this caller set it."""
    return bool(client().set(key("flag", name), value, nx=True, px=int(ttl_seconds * 1000)))


def put_flag(name: str, value: str, ttl_seconds: float) -> None:
    client().set(key("flag", name), value, px=int(ttl_seconds * 1000))

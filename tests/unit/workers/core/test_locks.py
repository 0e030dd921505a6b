"""Leases against the real Redis: renewed while the holder lives, lapsed soon after it dies."""

from __future__ import annotations

import os
import threading
import uuid

from workers.core import locks
from workers.core.redis import client, key


def _name() -> str:
    return f"test-lease:{uuid.uuid4().hex[:8]}"


class _Ticks(threading.Event):
    """The heartbeat's stop event: each ``tick()`` wakes the heartbeat once, as if
    ``renew_every`` had passed; ``set()`` (the release) ends it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []
        self._wake = threading.Semaphore(0)
        self._asleep = threading.Semaphore(0)

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self._asleep.release()
        self._wake.acquire()
        return self.is_set()

    def set(self) -> None:
        super().set()
        self._wake.release()

    def tick(self) -> None:
        """Wake the heartbeat and return once it sleeps again (its renewal done)."""
        self._wake.release()
        assert self._asleep.acquire(timeout=10), "the heartbeat did not go back to sleep"

    def started(self) -> None:
        assert self._asleep.acquire(timeout=10), "the heartbeat never started"


def test_a_live_holder_keeps_its_lease_well_past_the_ttl(redis_client: object) -> None:
    name, ticks = _name(), _Ticks()
    lease = locks.Lease(name, 30.0, stop=ticks)
    assert lease.acquire()
    ticks.started()
    for _ in range(4):  # four renewals: 40 s of a 30 s lease
        client().pexpire(key("lock", name), 1000)  # as if 29 s had passed since the last one
        ticks.tick()
        assert int(client().pttl(key("lock", name))) > 25_000  # extended by the whole TTL
    assert ticks.waits == [10.0] * 5  # a renewal every third of the TTL
    info = locks.lease_info(name)
    assert info is not None
    assert info.holder.endswith(f":{os.getpid()}")
    assert (lease.renewals, lease.lost) == (4, False)
    with locks.hold_lease(name, 30.0) as other:
        assert other is None
    lease.release()
    assert locks.lease_info(name) is None


def test_a_holder_that_stops_renewing_leaves_a_lease_that_lapses_within_its_ttl(
    redis_client: object,
) -> None:
    # A killed holder renews no more: what is left is the key and its TTL (the killed process
    # itself: tests/integration/workers/core/test_locks.py).
    name, ticks = _name(), _Ticks()
    lease = locks.Lease(name, 1.0, stop=ticks)
    assert lease.acquire()
    ticks.started()
    assert 0 < int(client().pttl(key("lock", name))) <= 1000
    lease.release()


def test_a_holder_whose_lease_was_taken_over_never_extends_or_deletes_it(
    redis_client: object,
) -> None:
    name = _name()
    lease = locks.Lease(name, 5.0, renew_every=60)
    assert lease.acquire()
    # Lapsed and taken by someone else (as after a long stall).
    client().set(key("lock", name), "successor|other:1|2026-01-01T00:00:00+00:00", px=3000)
    assert lease.renew() is False
    assert lease.lost
    lease.release()
    assert client().get(key("lock", name)) == b"successor|other:1|2026-01-01T00:00:00+00:00"
    assert 0 < int(client().pttl(key("lock", name))) <= 3000  # not extended to 5 s
    info = locks.lease_info(name)
    assert info is not None
    assert info.holder == "other:1"


def test_leases_lists_held_ones_by_prefix(redis_client: object) -> None:
    tag = uuid.uuid4().hex[:6]
    with locks.hold_lease(f"sync:{tag}-a", 5) as a, locks.hold_lease(f"sync:{tag}-b", 2) as b:
        assert a is not None
        assert b is not None
        found = [i.name for i in locks.leases(f"sync:{tag}")]
        assert found == [f"sync:{tag}-b", f"sync:{tag}-a"]  # soonest to lapse first
    assert locks.leases(f"sync:{tag}") == []

"""The pieces ``rrpd beat`` and ``rrpd worker`` use to ride out Redis outages (in process; the
real processes are in tests/integration/rrpd/test_beat_redis_outage.py and
tests/integration/workers/tasking/test_worker_redis_outage.py)."""

from __future__ import annotations

import random

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from workers.core.outages import is_database_outage, is_redis_outage
from workers.tasking.supervision import BEAT_RECOVERABLE, Backoff


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(cap=10, rng=random.Random(1))
    waits = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 10, 10, 10, 10]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling
    backoff.reset()
    assert backoff.next() <= 1


def test_beat_recovers_from_redis_errors_and_a_lost_lock_but_not_from_bugs() -> None:
    for exc in (
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("timed out"),
        redis.exceptions.BusyLoadingError("LOADING"),
        redis.exceptions.LockNotOwnedError("Cannot extend a lock that's no longer owned"),
        kombu.exceptions.OperationalError("refused"),
        ConnectionRefusedError(111, "refused"),
    ):
        assert isinstance(exc, BEAT_RECOVERABLE), exc
    for bug in (AttributeError("'NoneType' object has no attribute 'extend'"), KeyError("x")):
        assert not isinstance(bug, BEAT_RECOVERABLE)


def test_what_counts_as_a_database_outage() -> None:
    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert is_database_outage(refused)
    assert is_database_outage(sqlalchemy.exc.InterfaceError("x", {}, Exception("closed")))
    dropped = sqlalchemy.exc.DBAPIError("x", {}, Exception("gone"), connection_invalidated=True)
    assert is_database_outage(dropped)
    assert not is_database_outage(sqlalchemy.exc.IntegrityError("x", {}, Exception("dup")))
    assert not is_database_outage(ValueError("x"))
    assert is_redis_outage(redis.exceptions.ConnectionError("refused"))
    assert not is_redis_outage(redis.exceptions.ResponseError("WRONGTYPE"))

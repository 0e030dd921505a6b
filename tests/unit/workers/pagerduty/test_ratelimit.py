"""The Redis limiter against a real Redis (db 15, a unique key prefix per run, keys removed)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from workers.pagerduty.errors import RateLimited
from workers.pagerduty.ratelimit import RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis15() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"rrpdtest-pdrl-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_burst_from_many_threads_stays_under_rate(redis15: tuple[redis.Redis, str]) -> None:
    client, prefix = redis15
    per_minute, burst, n = 1200, 5, 30  # 20/s
    limiter = RedisRateLimiter(client, per_minute=per_minute, burst=burst, key_prefix=prefix)
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(n // 6):
            limiter.acquire("fp-burst")
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert len(times) == n
    # n requests at 20/s with a burst of 5 need at least (n - burst) / 20 seconds.
    assert elapsed >= (n - burst) / 20 - 0.05
    times.sort()
    # In any window of w seconds at most burst + rate * w (+1 for clock granularity).
    for i, t0 in enumerate(times):
        for w in (0.25, 0.5, 1.0):
            inside = sum(1 for t in times[i:] if t - t0 < w)
            assert inside <= burst + 20 * w + 1
    assert client.exists(f"{prefix}:pd-rate:fp-burst") == 1
    ttl = client.pttl(f"{prefix}:pd-rate:fp-burst")
    assert 0 < ttl <= 3000  # keys expire on their own


def test_separate_credentials_have_separate_buckets(redis15: tuple[redis.Redis, str]) -> None:
    client, prefix = redis15
    limiter = RedisRateLimiter(client, per_minute=60, burst=2, key_prefix=prefix)
    assert limiter.try_acquire("a") == 0
    assert limiter.try_acquire("a") == 0
    assert limiter.try_acquire("a") > 0.5  # one per second after the burst
    assert limiter.try_acquire("b") == 0


def test_acquire_is_bounded(redis15: tuple[redis.Redis, str]) -> None:
    client, prefix = redis15
    slept: list[float] = []
    limiter = RedisRateLimiter(
        client, per_minute=6, burst=1, key_prefix=prefix, max_wait=5, sleep=slept.append
    )
    limiter.acquire("slow")
    with pytest.raises(RateLimited) as info:
        limiter.acquire("slow")  # the next slot is ~10 s away, beyond max_wait
    assert info.value.reset_after is not None
    assert 9 < info.value.reset_after <= 10
    assert slept == []


def test_penalize_blocks_every_worker(redis15: tuple[redis.Redis, str]) -> None:
    client, prefix = redis15
    limiter = RedisRateLimiter(client, per_minute=6000, burst=100, key_prefix=prefix)
    other_worker = RedisRateLimiter(client, per_minute=6000, burst=100, key_prefix=prefix)
    limiter.penalize("fp", 2.0)
    wait = other_worker.try_acquire("fp")
    assert 1.5 < wait <= 2.0
    assert other_worker.try_acquire("other") == 0


def test_fails_open_without_redis() -> None:
    limiter = RedisRateLimiter.from_url("redis://127.0.0.1:1/15", per_minute=1, burst=1)
    limiter.acquire("x")
    limiter.acquire("x")  # would wait a minute if Redis were there
    limiter.penalize("x", 5)

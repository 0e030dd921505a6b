"""The shared limiter never lets PagerDuty see more than 960 requests in any 60 s window.

The real Lua script in the real Redis, on a fake clock (seconds of simulated time run in
milliseconds), driven by clients that ask as fast as they are allowed, in bursts after idle
spells, and at random: every sliding 60-second window is counted.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Iterator

import pytest
import redis

from workers.core.settings import get_settings
from workers.pagerduty.ratelimit import RedisRateLimiter

PAGERDUTY_PER_MINUTE = 960


@pytest.fixture
def redis15() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    prefix = f"rrpdtest-window-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def _busiest_window(admitted: list[float], width: float = 60.0) -> int:
    """The most admissions in any window [t, t + width), t ranging over every admission."""
    return max(bisect.bisect_left(admitted, t + width) - i for i, t in enumerate(admitted))


def _drive(
    limiter: RedisRateLimiter, now: list[float], pattern: str, seconds: float, seed: int
) -> list[float]:
    rng = random.Random(seed)
    admitted: list[float] = []
    while now[0] < seconds:
        wait = limiter.try_acquire("conn-x")
        if wait <= 0:
            admitted.append(now[0])
            if pattern == "bursts" and rng.random() < 0.01:
                now[0] += rng.uniform(1, 20)  # idle: the bucket refills, then a burst
            elif pattern == "random":
                now[0] += rng.expovariate(20)
        else:
            now[0] += wait if pattern == "greedy" else wait + rng.uniform(0, 0.01)
    return admitted


@pytest.mark.parametrize("pattern", ["greedy", "bursts", "random"])
def test_no_60s_window_admits_more_than_pagerduty_allows(
    redis15: tuple[redis.Redis, str], pattern: str
) -> None:
    client, prefix = redis15
    settings = get_settings()
    per_minute, burst = (
        settings.pagerduty_rate_limit_per_minute,
        settings.pagerduty_rate_limit_burst,
    )
    now = [0.0]
    limiter = RedisRateLimiter(
        client, per_minute=per_minute, burst=burst, key_prefix=prefix, clock=lambda: now[0]
    )
    admitted = _drive(limiter, now, pattern, 150.0, seed=len(pattern))
    busiest = _busiest_window(admitted)
    assert busiest <= per_minute + burst <= PAGERDUTY_PER_MINUTE
    if pattern == "greedy":
        # Greedy clients get the whole budget: the burst at once, then the pace.
        assert busiest >= per_minute + burst - 1
        assert admitted[burst - 1] < 0.001 < admitted[burst]  # at once (µs rounding aside)


def test_the_configured_burst_fits_under_pagerduty_s_limit() -> None:
    settings = get_settings()
    assert (
        settings.pagerduty_rate_limit_per_minute + settings.pagerduty_rate_limit_burst
        <= PAGERDUTY_PER_MINUTE
    )
    assert settings.pagerduty_rate_limit_burst >= settings.pagerduty_max_in_flight

"""Rate limiting per PagerDuty credential, shared by every worker through Redis.

PagerDuty allows 960 requests per minute per credential. Many worker processes may use the same
credential at once (a scheduled sync and a "sync now", retries), so the budget must be shared:
a GCRA ("generic cell rate algorithm", a leaky bucket that stores one timestamp) runs in a
single Lua script, atomically, against Redis's own clock, so worker clocks don't matter.

With ``per_minute`` = R and ``burst`` = B, any window of T seconds admits at most
``B + R * T / 60`` requests; the defaults (900/min, burst 50: the settings) admit at most 950
in any minute, under PagerDuty's 960 however it draws its window (tests/unit/workers/pagerduty/
test_ratelimit_window.py checks it against the real script with a fake clock). The burst lets
the client's concurrent reads (8 in flight) start at once; the pace bounds the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.pagerduty.errors import RateLimited

log = logging.getLogger(__name__)

# KEYS[1]: the theoretical arrival time (TAT, microseconds); KEYS[2]: a "blocked until" marker
# set after PagerDuty answered 429. ARGV[1]: emission interval (us); ARGV[2]: burst tolerance (us).
# Returns 0 when a slot was taken, else the microseconds to wait before asking again.
_GCRA_LUA = """
local now
if ARGV[3] then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local blocked = redis.call('PTTL', KEYS[2])
if blocked and blocked > 0 then
  return blocked * 1000
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance - interval
if allow_at > now then
  -- Rounded up: Redis truncates a Lua number to an integer, and a wait under 1 us would come
  -- back as 0, which means "admitted", without the slot being taken.
  return math.ceil(allow_at - now)
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return 0
"""


class RateLimiter(Protocol):
    """What :class:`~workers.pagerduty.client.PagerDutyClient` needs from a limiter."""

    def acquire(self, key: str) -> None:
        """Block (bounded) until one request may be sent; raise RateLimited when it can't."""

    def penalize(self, key: str, seconds: float) -> None:
        """PagerDuty answered 429: make every worker using ``key`` wait ``seconds``."""

    def blocked_for(self, key: str) -> float:
        """Seconds ``key`` stays blocked by a 429 (0 when free); never waits."""


class NoopRateLimiter:
    """For callers without Redis (one-off validation, tests): never waits."""

    def acquire(self, key: str) -> None:
        return None

    def penalize(self, key: str, seconds: float) -> None:
        return None

    def blocked_for(self, key: str) -> float:
        return 0.0


class RedisRateLimiter:
    """A GCRA limiter shared through Redis, one bucket per credential fingerprint.

    ``max_wait`` bounds how long :meth:`acquire` blocks, so a Celery task never sleeps
    unboundedly: past it, :class:`RateLimited` is raised with the wait still needed. If Redis is
    unreachable the limiter fails open (with a warning): PagerDuty's own 429s, which the client
    retries, are the backstop, and a Redis blip should not stop every sync.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        per_minute: int = 900,
        burst: int = 50,
        key_prefix: str = "rrpd",
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._redis = redis_client
        self.per_minute = per_minute
        self.burst = burst
        self.key_prefix = key_prefix.rstrip(":")
        self.max_wait = max_wait
        self._sleep = sleep
        # Tests only: seconds on a fake clock instead of Redis's TIME.
        self._clock = clock
        self._interval_us = 60_000_000 / per_minute
        self._tolerance_us = self._interval_us * (burst - 1)
        self._script = redis_client.register_script(_GCRA_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisRateLimiter:
        # Few, short retries: a dead Redis must cost milliseconds, not seconds, per request.
        client = redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )
        return cls(client, **kwargs)  # type: ignore[arg-type]

    def keys_for(self, key: str) -> tuple[str, str]:
        base = f"{self.key_prefix}:pd-rate:{key}"
        return base, f"{base}:blocked"

    def try_acquire(self, key: str) -> float:
        """Take a slot if one is free: 0.0, else the seconds to wait before asking again."""
        try:
            args: list[float] = [self._interval_us, self._tolerance_us]
            if self._clock is not None:
                args.append(round(self._clock() * 1_000_000))
            wait_us = self._script(keys=list(self.keys_for(key)), args=args)
        except redis.RedisError as exc:
            log.warning("Rate limiter unavailable (%s); sending without it.", type(exc).__name__)
            return 0.0
        return max(0.0, float(wait_us) / 1_000_000)

    def acquire(self, key: str) -> None:
        waited = 0.0
        while True:
            wait = self.try_acquire(key)
            if wait <= 0:
                return
            if waited + wait > self.max_wait:
                raise RateLimited(
                    "Our shared rate limit for this PagerDuty credential is used up; "
                    "try again later",
                    reset_after=round(wait, 3),
                    endpoint="rate limiter",
                )
            self._sleep(wait)
            waited += wait

    def penalize(self, key: str, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            self._redis.set(self.keys_for(key)[1], "1", px=max(1, int(seconds * 1000)))
        except redis.RedisError as exc:
            log.warning("Rate limiter unavailable (%s); 429 not shared.", type(exc).__name__)

    def blocked_for(self, key: str) -> float:
        try:
            ttl_ms = self._redis.pttl(self.keys_for(key)[1])
        except redis.RedisError:
            return 0.0
        return max(0.0, float(ttl_ms) / 1000) if isinstance(ttl_ms, int) else 0.0

"""The process's one Redis client, and the key prefix every key we own starts with.

Locks and flags (``workers.core.locks``), metrics (``workers.core.metrics``), the Celery poison
guard (``workers.tasking.app``) and the shared PagerDuty rate limiter all use this client: one
connection pool per process, created lazily and forgotten in a forked child
(``workers.core.process``).

Timeouts are short on purpose. The rate limiter runs before every PagerDuty request and fails
open when Redis is away, so a dead Redis must cost milliseconds, not seconds; locks, flags and
counters are single round trips that a healthy Redis answers in well under a second.
"""

from __future__ import annotations

import threading

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.core.process import after_fork
from workers.core.settings import get_settings

_lock = threading.Lock()
_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The shared client for ``RRPD_BROKER_URL`` (created on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(
                get_settings().broker_url,
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
                health_check_interval=30,
            )
        return _client


@after_fork
def reset() -> None:
    """Forget the client (a forked child, or tests that changed the settings)."""
    global _client, _lock
    _client = None
    _lock = threading.Lock()


def key(*parts: str) -> str:
    """``<RRPD_REDIS_KEY_PREFIX>:<part>:...``: every Redis key we own."""
    return ":".join([get_settings().redis_key_prefix, *parts])

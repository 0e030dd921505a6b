"""The HTTP transport under ``PagerDutyClient``: one pooled ``httpx.Client`` per process
(forgotten in a forked child), explicit timeouts, bounded retries with full jitter, the shared
rate limiter and the request counters. docs/pagerduty-client.md has the policy.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import httpx

from workers.core.process import after_fork
from workers.pagerduty.concurrency import map_concurrent
from workers.pagerduty.errors import (
    PaginationLimit,
    RateLimited,
    Transient,
    error_from_response,
)
from workers.pagerduty.ratelimit import NoopRateLimiter, RateLimiter
from workers.pagerduty.records import (
    Credential,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

ACCEPT = "application/vnd.pagerduty+json;version=2"
USER_AGENT = "rr-pagerduty/0.1 (+https://roundrobin.example)"
# PagerDuty refuses offset + limit > 10000 on offset-paginated lists (400, code 2002).
MAX_OFFSET_WINDOW = 10_000
PAGE_LIMIT = 100
V3_PAGE_LIMIT = 1000
# Requests in flight at once per client (one credential); the shared limiter paces them.
DEFAULT_MAX_IN_FLIGHT = 8

# --- shared HTTP client -------------------------------------------------------------------------

_shared_lock = threading.Lock()
_shared_http: httpx.Client | None = None


def shared_http_client() -> httpx.Client:
    """The process-wide pooled client (keep-alive across tasks). Created lazily, after fork."""
    global _shared_http
    with _shared_lock:
        if _shared_http is None or _shared_http.is_closed:
            _shared_http = httpx.Client(
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                timeout=httpx.Timeout(10.0, connect=5.0),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
        return _shared_http


@after_fork
def _forget_shared_after_fork() -> None:
    # A pool inherited from the parent shares sockets with it; the child starts its own.
    global _shared_http, _shared_lock
    _shared_http = None
    _shared_lock = threading.Lock()


# --- the client ---------------------------------------------------------------------------------


class Transport:
    """GETs PagerDuty's REST API for one credential (``PagerDutyClient`` adds the reads).

    Safe to share between threads: per-call state lives on the stack; only the request counters
    are shared, under a lock. Retries are bounded by ``max_retries`` and by ``retry_budget``
    seconds of sleeping per call; past either, the error is raised for the task to retry later.
    """

    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        http: httpx.Client | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limit_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        retry_budget: float = 30.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self._http = http if http is not None else shared_http_client()
        self._limiter: RateLimiter = rate_limiter or NoopRateLimiter()
        # PagerDuty limits per user/app, not per token string; callers that know the
        # connection can pass its id so a refreshed token keeps the same bucket.
        self.rate_limit_key = rate_limit_key or credential.fingerprint
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self.max_retries = max_retries
        self.retry_budget = retry_budget
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._count_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, credential={self.credential!r})"

    # -- counters --

    @property
    def requests_made(self) -> int:
        with self._count_lock:
            return sum(self._counts.values())

    @property
    def requests_by_endpoint(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self._counts)

    @property
    def rate_limited_by_endpoint(self) -> dict[str, int]:
        """429 answers received, including those the client retried on its own."""
        with self._count_lock:
            return dict(self._rate_limited)

    def _count(self, endpoint: str) -> None:
        with self._count_lock:
            self._counts[endpoint] += 1

    # -- concurrency --

    def map_concurrent(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        per_item: tuple[type[BaseException], ...] = (),
    ) -> list[R | BaseException]:
        """``fn`` over ``items`` with up to ``max_in_flight`` calls at once, results in order
        (``workers.pagerduty.concurrency.map_concurrent`` says what errors do)."""
        return map_concurrent(fn, items, max_in_flight=self.max_in_flight, per_item=per_item)

    def map_all(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``map_concurrent`` where every error is account-wide (raised)."""
        return [r for r in self.map_concurrent(fn, items) if not isinstance(r, BaseException)]

    # -- transport --

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": ACCEPT,
            "Authorization": self.credential.authorization,
            "User-Agent": USER_AGENT,
        }

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads a fleet's retries instead of synchronising them.
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))

    def _send_once(
        self, endpoint: str, path: str, params: Any, penalty_key: str
    ) -> tuple[dict[str, Any], httpx.Response]:
        url = self.base_url + path
        try:
            response = self._http.get(
                url, params=params, headers=self._headers(), timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            self._count(endpoint)
            raise Transient(
                f"PagerDuty did not answer in time ({type(exc).__name__})", endpoint=endpoint
            ) from None
        except httpx.RequestError as exc:  # transport, protocol and body-decoding failures
            self._count(endpoint)
            raise Transient(
                f"Could not reach PagerDuty ({type(exc).__name__})", endpoint=endpoint
            ) from None
        self._count(endpoint)
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise Transient(
                    "PagerDuty answered 2xx with a body that is not a JSON object",
                    status=response.status_code,
                    endpoint=endpoint,
                )
            return body, response
        error = error_from_response(response, endpoint=endpoint, secrets=[self.credential.secret])
        if isinstance(error, RateLimited):
            with self._count_lock:
                self._rate_limited[endpoint] += 1
            if error.reset_after:
                self._limiter.penalize(penalty_key, error.reset_after)
        raise error

    def get_json(
        self, endpoint: str, path: str, params: Any = None, *, scope: str | None = None
    ) -> dict[str, Any]:
        """GET with bounded retries. ``endpoint`` is the label for counts and errors.

        ``scope`` names an operation with a rate limit of its own (``/oncalls``): a 429 there
        blocks only that operation for this credential and is raised at once, so the caller can
        fall back to other endpoints instead of waiting.
        """
        return self.get_with_response(endpoint, path, params, scope=scope)[0]

    def scope_key(self, scope: str) -> str:
        return f"{self.rate_limit_key}:{scope}"

    def get_with_response(
        self, endpoint: str, path: str, params: Any = None, *, scope: str | None = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        penalty_key = self.scope_key(scope) if scope else self.rate_limit_key
        if scope:
            blocked = self._limiter.blocked_for(penalty_key)
            if blocked > 0:
                raise RateLimited(
                    f"PagerDuty's own limit for {endpoint} was reached recently",
                    reset_after=round(blocked, 3),
                    endpoint=endpoint,
                )
        slept = 0.0
        attempt = 0
        while True:
            # Time spent waiting for the shared limiter counts against the same budget; if the
            # limiter itself gives up (it already waited its bound), that is final for this call.
            started = time.monotonic()
            self._limiter.acquire(self.rate_limit_key)
            slept += time.monotonic() - started
            try:
                return self._send_once(endpoint, path, params, penalty_key)
            except (RateLimited, Transient) as exc:
                if attempt >= self.max_retries or (scope and isinstance(exc, RateLimited)):
                    raise
                if isinstance(exc, RateLimited) and exc.reset_after is not None:
                    # A little jitter past the reset so a fleet doesn't return in lockstep.
                    delay = exc.reset_after + self._rng.uniform(0, 0.25)
                else:
                    delay = self._backoff(attempt)
                if slept + delay > self.retry_budget:
                    raise
                log.info(
                    "PagerDuty %s: %s; retry %d in %.2fs (credential %s)",
                    endpoint,
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                    self.rate_limit_key,
                )
                self._sleep(delay)
                slept += delay
                attempt += 1

    def paginate(
        self,
        endpoint: str,
        path: str,
        collection: str,
        params: list[tuple[str, str]] | None = None,
        *,
        limit: int = PAGE_LIMIT,
        offset: int = 0,
        scope: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of an offset-paginated list.

        The offset advances by the number of items received (PagerDuty may return fewer than
        ``limit``); the walk stops when ``more`` is false and raises PaginationLimit rather than
        ask past PagerDuty's 10,000-record window.
        """
        while True:
            page_limit = min(limit, MAX_OFFSET_WINDOW - offset)
            if page_limit <= 0:
                raise PaginationLimit(
                    f"{endpoint} has more than {MAX_OFFSET_WINDOW:,} records, the most "
                    "PagerDuty's API will list; refusing to return a truncated list",
                    endpoint=endpoint,
                    fetched=offset,
                )
            query = [*(params or []), ("limit", str(page_limit)), ("offset", str(offset))]
            page = self.get_json(endpoint, path, query, scope=scope)
            items = page.get(collection)
            if not isinstance(items, list):
                raise Transient(
                    f"PagerDuty's {endpoint} answer has no '{collection}' list", endpoint=endpoint
                )
            for item in items:
                if isinstance(item, dict):
                    yield item
            if not page.get("more"):
                return
            if not items:
                # more=true with nothing in the page would loop forever.
                raise Transient(
                    f"PagerDuty's {endpoint} said more=true but sent an empty page",
                    endpoint=endpoint,
                )
            offset += len(items)


def page_offsets(start: int, total: int, limit: int) -> Sequence[tuple[int, int]]:
    """(offset, limit) of every page from ``start`` up to ``total`` records, inside PagerDuty's
    10,000-record window."""
    end = min(total, MAX_OFFSET_WINDOW)
    return [(o, min(limit, MAX_OFFSET_WINDOW - o)) for o in range(start, end, limit)]


def int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None

"""Synchronous PagerDuty REST client used by the Celery tasks.

Why synchronous: a prefork Celery worker runs one task per process, and PagerDuty asks for one
request at a time per token, so a sync of one connection is a sequence of requests anyway.
Throughput across many connections comes from many worker processes (or threads), each holding
one pooled ``httpx.Client`` reused across tasks. See docs/pagerduty-client.md.

Each method is one PagerDuty read and returns records (``workers.pagerduty.records``); how the
reads combine into one sync is ``workers.pagerduty.snapshot``. Where PagerDuty's real behaviour
differs from its schema the methods follow the behaviour (docs/simulator.md, fidelity table).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

import httpx

from workers.core.process import after_fork
from workers.pagerduty import parsing
from workers.pagerduty.errors import (
    BadRequest,
    NotFound,
    PaginationLimit,
    RateLimited,
    Transient,
    error_from_response,
)
from workers.pagerduty.ratelimit import NoopRateLimiter, RateLimiter
from workers.pagerduty.records import (
    Credential,
    ProbeResult,
    Schedule,
    Shift,
    Timeline,
    User,
    UserRef,
    UsersPage,
    V3ScheduleRef,
)

log = logging.getLogger(__name__)

ACCEPT = "application/vnd.pagerduty+json;version=2"
USER_AGENT = "rr-pagerduty/0.1 (+https://roundrobin.example)"
# PagerDuty refuses offset + limit > 10000 on offset-paginated lists (400, code 2002).
MAX_OFFSET_WINDOW = 10_000
PAGE_LIMIT = 100
V3_PAGE_LIMIT = 1000
# Schedule ids per /oncalls request: each adds ~25 characters of query string, and 50 keep the
# URL far below any proxy's limit while one page of 100 entries usually holds the answer.
ONCALLS_SCHEDULE_CHUNK = 50

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


class PagerDutyClient:
    """Reads users and schedules for one credential.

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
        self._count_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"PagerDutyClient(base_url={self.base_url!r}, credential={self.credential!r})"

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
        return self._get(endpoint, path, params, scope=scope)[0]

    def scope_key(self, scope: str) -> str:
        return f"{self.rate_limit_key}:{scope}"

    def _get(
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

    # -- API --

    def probe(self) -> ProbeResult:
        """Validate any credential kind with the cheapest read (GET /users?limit=1)."""
        body, response = self._get("GET /users", "/users", [("limit", "1")])
        users = body.get("users")
        first = users[0] if isinstance(users, list) and users else None
        html_url = first.get("html_url") if isinstance(first, dict) else None
        return ProbeResult(
            ratelimit_limit=_int_header(response, "ratelimit-limit"),
            ratelimit_remaining=_int_header(response, "ratelimit-remaining"),
            html_url=html_url if isinstance(html_url, str) else None,
        )

    def me(self) -> User | None:
        """The user a user-level key or OAuth token acts as; None for an account-level key
        (PagerDuty answers /users/me with 400 and a plain-string error for those)."""
        try:
            body = self.get_json("GET /users/me", "/users/me")
        except BadRequest:
            return None
        return parsing.user(body.get("user"))

    def key_level(self) -> Literal["account", "user"]:
        """'user' for user keys and OAuth tokens; 'account' when /users/me answers 400."""
        return "account" if self.me() is None else "user"

    # users

    def users_page(
        self, *, offset: int = 0, limit: int = PAGE_LIMIT, total: bool = False
    ) -> UsersPage:
        """One page of GET /users; ``total=True`` asks PagerDuty to count the account's users."""
        params = [("limit", str(limit)), ("offset", str(offset))]
        if total:
            params.append(("total", "true"))
        body = self.get_json("GET /users", "/users", params)
        items = body.get("users")
        if not isinstance(items, list):
            raise Transient(
                "PagerDuty's GET /users answer has no 'users' list", endpoint="GET /users"
            )
        raw_total = body.get("total")
        return UsersPage(
            users=tuple(u for u in map(parsing.user, items) if u is not None),
            more=bool(body.get("more")) and bool(items),
            total=raw_total
            if isinstance(raw_total, int) and not isinstance(raw_total, bool)
            else None,
        )

    def list_users(self, *, offset: int = 0) -> list[User]:
        """Every user from ``offset`` on; PaginationLimit past PagerDuty's 10,000-record window."""
        users: dict[str, User] = {}
        for item in self.paginate("GET /users", "/users", "users", offset=offset):
            user = parsing.user(item)
            if user is not None:
                users.setdefault(user.id, user)
        return list(users.values())

    def get_user(self, user_id: str) -> User | None:
        """One user, or None when PagerDuty no longer has them (deleted: 404)."""
        try:
            body = self.get_json("GET /users/{id}", f"/users/{parsing.path_segment(user_id)}")
        except NotFound:
            return None
        return parsing.user(body.get("user"))

    def schedule_users(self, schedule_id: str) -> list[User]:
        """Every user on a v2 schedule, as full user objects (email included).

        Without since/until PagerDuty lists all the schedule's users, not who is on call.
        """
        body = self.get_json(
            "GET /schedules/{id}/users",
            f"/schedules/{parsing.path_segment(schedule_id)}/users",
        )
        items = body.get("users")
        return [u for u in map(parsing.user, items if isinstance(items, list) else []) if u]

    # schedules

    def list_schedules(self) -> list[Schedule]:
        """Every v2 schedule with its members and escalation policies (no on-call: the list
        never renders it, whatever ``include[]`` asks)."""
        schedules: dict[str, Schedule] = {}
        for item in self.paginate("GET /schedules", "/schedules", "schedules"):
            schedule = parsing.v2_schedule(item)
            if schedule is not None:
                schedules.setdefault(schedule.id, schedule)
        return list(schedules.values())

    def list_v3_schedule_refs(self) -> list[V3ScheduleRef]:
        refs: dict[str, V3ScheduleRef] = {}
        for item in self.paginate(
            "GET /v3/schedules", "/v3/schedules", "schedules", limit=V3_PAGE_LIMIT
        ):
            schedule_id = parsing.ref_id(item)
            if schedule_id:
                name = parsing.text(item, "summary", "name") or schedule_id
                refs.setdefault(schedule_id, V3ScheduleRef(id=schedule_id, name=name))
        return list(refs.values())

    def schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        """Who is on call for a v2 schedule over [since, until), overrides included.

        PagerDuty's own recipe: ``GET /schedules/{id}?since&until`` and read
        ``final_schedule.rendered_schedule_entries``; without since/until it renders nothing.
        ``overflow=true`` asks for true shift ends rather than ends cut at ``until``.
        """
        since, until = _window(since, until)
        endpoint = "GET /schedules/{id}"
        body = self.get_json(
            endpoint,
            f"/schedules/{parsing.path_segment(schedule_id)}",
            [
                ("since", parsing.iso(since)),
                ("until", parsing.iso(until)),
                ("time_zone", "UTC"),
                ("overflow", "true"),
            ],
        )
        data = _entity(body, "schedule", endpoint)
        final = data.get("final_schedule")
        entries = final.get("rendered_schedule_entries") if isinstance(final, dict) else None
        return Timeline(
            schedule_id=schedule_id,
            since=since,
            until=until,
            shifts=parsing.rendered_shifts(schedule_id, entries),
            members=parsing.user_refs(data.get("users")),
            name=parsing.text(data, "name", "summary"),
            time_zone=parsing.text(data, "time_zone"),
        )

    def v3_schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        """A v3 schedule's computed shift assignments over [since, until), and its members.

        Members are the users its rotations name, plus ``include[]=users`` when PagerDuty
        renders it; assignments may overlap (several people on call at once).
        """
        since, until = _window(since, until)
        endpoint = "GET /v3/schedules/{id}"
        body = self.get_json(
            endpoint,
            f"/v3/schedules/{parsing.path_segment(schedule_id)}",
            [
                ("include[]", "final_schedule"),
                ("include[]", "users"),
                ("since", parsing.iso(since)),
                ("until", parsing.iso(until)),
                ("time_zone", "UTC"),
                ("overflow", "true"),
            ],
        )
        data = _entity(body, "schedule", endpoint)
        final = data.get("final_schedule")
        raw = final.get("computed_shift_assignments") if isinstance(final, dict) else None
        shifts = parsing.v3_shifts(schedule_id, raw)
        members: dict[str, UserRef] = {}
        for ref in (
            *parsing.v3_rotation_members(data.get("rotations")),
            *parsing.user_refs(data.get("users")),
            *(s.user for s in shifts),
        ):
            members.setdefault(ref.id, ref)
        return Timeline(
            schedule_id=schedule_id,
            since=since,
            until=until,
            shifts=shifts,
            members=tuple(members.values()),
            name=parsing.text(data, "name", "summary"),
            time_zone=parsing.text(data, "time_zone"),
        )

    def oncalls(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> tuple[list[Shift], dict[str, User]]:
        """Who is on call over [since, until) for these schedules, batched through /oncalls.

        ``/oncalls`` is computed per escalation policy: a schedule no policy uses is absent, and
        one used at several levels repeats (deduplicated here). ``include[]=users`` embeds full
        users, so on-call people need no lookup of their own. Permanent on-calls (``schedule``
        null) are not schedule shifts and are skipped.
        """
        since, until = _window(since, until)
        shifts: dict[tuple[str, str, datetime | None, datetime | None], Shift] = {}
        users: dict[str, User] = {}
        wanted = list(dict.fromkeys(schedule_ids))
        for i in range(0, len(wanted), ONCALLS_SCHEDULE_CHUNK):
            chunk = wanted[i : i + ONCALLS_SCHEDULE_CHUNK]
            params = [
                *(("schedule_ids[]", sid) for sid in chunk),
                ("include[]", "users"),
                ("since", parsing.iso(since)),
                ("until", parsing.iso(until)),
                ("time_zone", "UTC"),
            ]
            for item in self.paginate(
                "GET /oncalls", "/oncalls", "oncalls", params, scope="oncalls"
            ):
                sid = parsing.ref_id(item.get("schedule"))
                if sid is None or sid not in chunk:
                    continue
                raw_user = item.get("user")
                ref = parsing.user_ref(raw_user)
                if ref is None:
                    continue
                full = parsing.user(raw_user)
                if full is not None and full.email:
                    users.setdefault(full.id, full)
                start, end = (
                    parsing.parse_time(item.get("start")),
                    parsing.parse_time(item.get("end")),
                )
                shifts.setdefault((sid, ref.id, start, end), Shift(sid, ref, start, end))
        return list(shifts.values()), users


# --- helpers ------------------------------------------------------------------------------------


def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    since, until = parsing.whole_second(since), parsing.whole_second(until)
    if until <= since:
        raise ValueError("until must be at least one second after since")
    return since, until


def _entity(body: dict[str, Any], key: str, endpoint: str) -> dict[str, Any]:
    data = body.get(key)
    if not isinstance(data, dict):
        raise Transient(f"PagerDuty's {endpoint} answer has no '{key}' object", endpoint=endpoint)
    return data


def _int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


__all__ = [
    "ACCEPT",
    "Credential",
    "PagerDutyClient",
    "shared_http_client",
]

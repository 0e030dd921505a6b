"""Synchronous PagerDuty REST client used by the Celery tasks.

Why synchronous: a prefork Celery worker runs one task per process, and PagerDuty asks for one
request at a time per token, so a sync of one connection is a sequence of requests anyway.
Throughput across many connections comes from many worker processes (or threads), each holding
one pooled ``httpx.Client`` reused across tasks. See docs/pagerduty-client.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx

from workers.pagerduty.errors import (
    BadRequest,
    NotFound,
    PagerDutyError,
    PaginationLimit,
    RateLimited,
    Transient,
    error_from_response,
    reset_after_from_headers,
)
from workers.pagerduty.ratelimit import NoopRateLimiter, RateLimiter

log = logging.getLogger(__name__)

ACCEPT = "application/vnd.pagerduty+json;version=2"
USER_AGENT = "rr-pagerduty/0.1 (+https://roundrobin.example)"
# PagerDuty refuses offset + limit > 10000 on offset-paginated lists.
MAX_OFFSET_WINDOW = 10_000
PAGE_LIMIT = 100
V3_PAGE_LIMIT = 1000
# How far ahead a v3 schedule's assignments are read to decide who its members are.
V3_MEMBER_WINDOW = timedelta(days=14)

CredentialKind = Literal["api_key", "oauth"]


@dataclass(frozen=True)
class Credential:
    """A PagerDuty secret and how to present it. ``repr`` and ``str`` never show the secret."""

    kind: CredentialKind
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("api_key", "oauth"):
            raise ValueError("Credential.kind must be 'api_key' or 'oauth'")
        if not self.secret or not self.secret.strip():
            raise ValueError("Credential.secret is empty")

    @property
    def fingerprint(self) -> str:
        """Short, stable, non-reversible id for rate-limit keys and logs."""
        return hashlib.sha256(f"{self.kind}:{self.secret}".encode()).hexdigest()[:16]

    @property
    def authorization(self) -> str:
        # Chosen from the stored kind only: a token's shape says nothing reliable about it.
        if self.kind == "api_key":
            return f"Token token={self.secret}"
        return f"Bearer {self.secret}"

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, fingerprint={self.fingerprint!r})"

    __str__ = __repr__


# --- result types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str | None
    time_zone: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """The credential works. Rate-limit headers are None when PagerDuty didn't send them."""

    ratelimit_limit: int | None
    ratelimit_remaining: int | None


@dataclass(frozen=True)
class Schedule:
    """One schedule, v2 or v3, in the shape the sync needs.

    ``on_call_user_ids`` may name users outside ``member_user_ids`` (an override puts someone
    on call who is not on any layer); both are deduplicated and keep PagerDuty's order.
    """

    id: str
    name: str
    version: Literal["v2", "v3"]
    time_zone: str | None
    member_user_ids: tuple[str, ...]
    on_call_user_ids: tuple[str, ...]


@dataclass(frozen=True)
class V3ScheduleRef:
    id: str
    name: str


@dataclass(frozen=True)
class ShiftAssignment:
    start: datetime
    end: datetime
    user_id: str | None  # None for an intentionally empty slot

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class V3Schedule:
    id: str
    name: str
    time_zone: str | None
    since: datetime
    until: datetime
    assignments: tuple[ShiftAssignment, ...]

    @property
    def member_user_ids(self) -> tuple[str, ...]:
        return _dedupe(a.user_id for a in self.assignments if a.user_id)

    def on_call_at(self, moment: datetime) -> tuple[str, ...]:
        """Everyone on call at ``moment``; overlapping assignments give several people."""
        return _dedupe(a.user_id for a in self.assignments if a.user_id and a.covers(moment))

    def as_schedule(self, now: datetime) -> Schedule:
        return Schedule(
            id=self.id,
            name=self.name,
            version="v3",
            time_zone=self.time_zone,
            member_user_ids=self.member_user_ids,
            on_call_user_ids=self.on_call_at(now),
        )


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything one sync needs, read in the fewest requests the API allows."""

    fetched_at: datetime
    users: tuple[User, ...]
    schedules: tuple[Schedule, ...]
    requests_made: int
    requests_by_endpoint: Mapping[str, int]


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


def _forget_shared_after_fork() -> None:
    # A pool inherited from the parent shares sockets with it; the child starts its own.
    global _shared_http, _shared_lock
    _shared_http = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared_after_fork)


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
        self, endpoint: str, path: str, params: Any
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
                self._limiter.penalize(self.rate_limit_key, error.reset_after)
        raise error

    def get_json(self, endpoint: str, path: str, params: Any = None) -> dict[str, Any]:
        """GET with bounded retries. ``endpoint`` is the label for counts and errors."""
        return self._get(endpoint, path, params)[0]

    def _get(
        self, endpoint: str, path: str, params: Any = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        slept = 0.0
        attempt = 0
        while True:
            # Time spent waiting for the shared limiter counts against the same budget; if the
            # limiter itself gives up (it already waited its bound), that is final for this call.
            started = time.monotonic()
            self._limiter.acquire(self.rate_limit_key)
            slept += time.monotonic() - started
            try:
                return self._send_once(endpoint, path, params)
            except (RateLimited, Transient) as exc:
                if attempt >= self.max_retries:
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
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of an offset-paginated list.

        The offset advances by the number of items received (PagerDuty may return fewer than
        ``limit``); the walk stops when ``more`` is false and raises PaginationLimit rather than
        ask past PagerDuty's 10,000-record window.
        """
        offset = 0
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
            page = self.get_json(endpoint, path, query)
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
        _, response = self._get("GET /users", "/users", [("limit", "1")])
        return ProbeResult(
            ratelimit_limit=_int_header(response, "ratelimit-limit"),
            ratelimit_remaining=_int_header(response, "ratelimit-remaining"),
        )

    def key_level(self) -> Literal["account", "user"]:
        """'user' for user keys and OAuth tokens; 'account' when /users/me answers 400."""
        try:
            self.get_json("GET /users/me", "/users/me")
        except BadRequest:
            return "account"
        return "user"

    def list_users(self) -> list[User]:
        users: dict[str, User] = {}
        for item in self.paginate("GET /users", "/users", "users"):
            user = _parse_user(item)
            if user is not None:
                users.setdefault(user.id, user)
        return list(users.values())

    def list_schedules(self, now: datetime | None = None) -> list[Schedule]:
        """Every v2 schedule with its members and who is on call at ``now``, in one pass.

        ``include[]=final_schedule`` with a one-second ``since``/``until`` window makes each
        list item carry its rendered on-call entries, so no per-schedule request is needed.
        """
        moment = _whole_second(now)
        params = [
            ("include[]", "final_schedule"),
            ("since", _iso(moment)),
            ("until", _iso(moment + timedelta(seconds=1))),
            ("time_zone", "UTC"),
        ]
        schedules: dict[str, Schedule] = {}
        for item in self.paginate("GET /schedules", "/schedules", "schedules", params):
            schedule = _parse_v2_schedule(item, moment)
            if schedule is not None:
                schedules.setdefault(schedule.id, schedule)
        return list(schedules.values())

    def list_v3_schedule_refs(self) -> list[V3ScheduleRef]:
        refs: dict[str, V3ScheduleRef] = {}
        for item in self.paginate(
            "GET /v3/schedules", "/v3/schedules", "schedules", limit=V3_PAGE_LIMIT
        ):
            schedule_id = item.get("id")
            if isinstance(schedule_id, str) and schedule_id:
                name = item.get("summary") or item.get("name") or schedule_id
                refs.setdefault(schedule_id, V3ScheduleRef(id=schedule_id, name=str(name)))
        return list(refs.values())

    def get_v3_schedule(self, schedule_id: str, since: datetime, until: datetime) -> V3Schedule:
        """A v3 schedule with its computed shift assignments over [since, until)."""
        if until <= since:
            raise ValueError("until must be after since")
        body = self.get_json(
            "GET /v3/schedules/{id}",
            f"/v3/schedules/{_path_segment(schedule_id)}",
            [
                ("include[]", "final_schedule"),
                ("since", _iso(_aware(since))),
                ("until", _iso(_aware(until))),
                ("time_zone", "UTC"),
            ],
        )
        data = body.get("schedule")
        if not isinstance(data, dict):
            raise Transient(
                "PagerDuty's v3 schedule answer has no 'schedule' object",
                endpoint="GET /v3/schedules/{id}",
            )
        final = data.get("final_schedule") or {}
        raw = final.get("computed_shift_assignments") if isinstance(final, dict) else None
        assignments = []
        for entry in raw if isinstance(raw, list) else []:
            assignment = _parse_assignment(entry)
            if assignment is not None:
                assignments.append(assignment)
        return V3Schedule(
            id=str(data.get("id") or schedule_id),
            name=str(data.get("name") or data.get("summary") or schedule_id),
            time_zone=data.get("time_zone"),
            since=_aware(since),
            until=_aware(until),
            assignments=tuple(assignments),
        )

    def fetch_account_snapshot(
        self, now: datetime | None = None, *, v3_window: timedelta = V3_MEMBER_WINDOW
    ) -> AccountSnapshot:
        """Users and every schedule (v2 and v3) with members and who is on call at ``now``.

        Requests: ceil(users/100) + ceil(v2 schedules/100) + ceil(v3 schedules/1000) + one per
        v3 schedule (at least 3). v3 members are the users assigned in [now, now + v3_window).
        """
        moment = _whole_second(now)
        before = self.requests_by_endpoint
        users = self.list_users()
        schedules: dict[str, Schedule] = {s.id: s for s in self.list_schedules(moment)}
        for ref in self.list_v3_schedule_refs():
            try:
                v3 = self.get_v3_schedule(ref.id, moment, moment + v3_window)
            except NotFound:
                # Deleted between the list and the read: it is simply gone.
                log.info("v3 schedule %s vanished during the snapshot", ref.id)
                continue
            # During an upgrade a schedule might show up in both lists: v3 is the live one.
            schedules[ref.id] = v3.as_schedule(moment)
        after = self.requests_by_endpoint
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
        return AccountSnapshot(
            fetched_at=moment,
            users=tuple(users),
            schedules=tuple(schedules.values()),
            requests_made=sum(delta.values()),
            requests_by_endpoint=delta,
        )


# --- parsing helpers ----------------------------------------------------------------------------


def _dedupe(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _whole_second(now: datetime | None) -> datetime:
    return _aware(now or datetime.now(UTC)).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return _aware(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def _path_segment(value: str) -> str:
    # Ids are PagerDuty's; still, never let one inject a path or query.
    return quote(value, safe="")


def _int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _parse_user(item: Mapping[str, Any]) -> User | None:
    user_id = item.get("id")
    if not isinstance(user_id, str) or not user_id:
        return None
    email = item.get("email")
    return User(
        id=user_id,
        name=str(item.get("name") or item.get("summary") or ""),
        email=email if isinstance(email, str) and email else None,
        time_zone=item.get("time_zone") if isinstance(item.get("time_zone"), str) else None,
        role=item.get("role") if isinstance(item.get("role"), str) else None,
    )


def _ref_id(ref: Any) -> str | None:
    if isinstance(ref, dict):
        value = ref.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def _parse_v2_schedule(item: Mapping[str, Any], moment: datetime) -> Schedule | None:
    schedule_id = item.get("id")
    if not isinstance(schedule_id, str) or not schedule_id:
        return None
    users = item.get("users") if isinstance(item.get("users"), list) else []
    members = _dedupe(uid for uid in (_ref_id(u) for u in users) if uid)
    on_call: list[str] = []
    final = item.get("final_schedule")
    entries = final.get("rendered_schedule_entries") if isinstance(final, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        uid = _ref_id(entry.get("user"))
        start = _parse_time(entry.get("start"))
        end = _parse_time(entry.get("end"))  # null: the entry does not end
        if uid and (start is None or start <= moment) and (end is None or moment < end):
            on_call.append(uid)
    return Schedule(
        id=schedule_id,
        name=str(item.get("name") or item.get("summary") or schedule_id),
        version="v2",
        time_zone=item.get("time_zone") if isinstance(item.get("time_zone"), str) else None,
        member_user_ids=members,
        on_call_user_ids=_dedupe(on_call),
    )


def _parse_assignment(entry: Any) -> ShiftAssignment | None:
    if not isinstance(entry, dict):
        return None
    start = _parse_time(entry.get("start_time"))
    end = _parse_time(entry.get("end_time"))
    if start is None or end is None or end <= start:
        return None
    member = entry.get("member") if isinstance(entry.get("member"), dict) else {}
    user_id = member.get("user_id") if member.get("type", "user_member") == "user_member" else None
    return ShiftAssignment(
        start=start, end=end, user_id=user_id if isinstance(user_id, str) and user_id else None
    )


__all__ = [
    "ACCEPT",
    "AccountSnapshot",
    "Credential",
    "PagerDutyClient",
    "PagerDutyError",
    "ProbeResult",
    "Schedule",
    "ShiftAssignment",
    "User",
    "V3Schedule",
    "V3ScheduleRef",
    "reset_after_from_headers",
    "shared_http_client",
]

"""Pure unit tests: error parsing, retry arithmetic, pagination bookkeeping, credentials.

These use httpx.MockTransport where a real server can't easily produce the case (a body that
is cut, a header that lies); the behaviour against a real socket is in test_against_simulator.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    InvalidCredentials,
    NoApiAccess,
    NotFound,
    PagerDutyError,
    PaginationLimit,
    RateLimited,
    Transient,
    error_from_response,
    parse_error_body,
)
from workers.pagerduty.oauth import build_authorization_url, check_scopes
from workers.pagerduty.records import Credential
from workers.pagerduty.transport import ACCEPT

SECRET = "u+SECRETSECRETSECRET"
BASE = "https://api.test"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[PagerDutyClient, list[float]]:
    slept: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = PagerDutyClient(
        BASE,
        Credential("api_key", SECRET),
        http=http,
        sleep=slept.append,
        rng=random.Random(7),
        **kwargs,
    )
    return client, slept


def test_credential_repr_hides_secret_and_header_follows_kind() -> None:
    key = Credential("api_key", SECRET)
    token = Credential("oauth", SECRET)
    assert SECRET not in repr(key)
    assert SECRET not in str(key)
    assert key.authorization == f"Token token={SECRET}"
    assert token.authorization == f"Bearer {SECRET}"
    assert key.fingerprint != token.fingerprint
    assert len(key.fingerprint) == 16
    with pytest.raises(ValueError, match="kind must be"):
        Credential("basic", SECRET)  # type: ignore[arg-type]


def test_client_sends_accept_and_auth_header_from_kind() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"users": [], "more": False})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    # A token that *looks* like an API key is still sent as Bearer: the kind decides.
    PagerDutyClient(BASE, Credential("oauth", "y_NbAkKc66ryYTWUXYEu"), http=http).probe()
    assert seen[0].headers["accept"] == ACCEPT
    assert seen[0].headers["authorization"] == "Bearer y_NbAkKc66ryYTWUXYEu"
    assert parse_qs(urlsplit(str(seen[0].url)).query) == {"limit": ["1"]}


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"error": {"message": "Invalid Input Provided", "code": 2001}}, BadRequest),
        (401, b"<html>Unauthorized</html>", InvalidCredentials),
        (401, {"error": {"message": "Authentication failed", "code": 2006}}, InvalidCredentials),
        (402, {"error": {"message": "Payment Required", "code": 2012}}, NoApiAccess),
        (403, {"error": {"message": "Access Denied", "code": 2010}}, Forbidden),
        (404, {"error": {"message": "Not Found", "code": 2100}}, NotFound),
        (429, b"", RateLimited),
        (500, b"oops", Transient),
        (503, {"error": {"message": "Service Unavailable"}}, Transient),
    ],
)
def test_error_mapping(status: int, body: Any, cls: type[PagerDutyError]) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.Response(status, content=content)
    error = error_from_response(response, endpoint="GET /users")
    assert type(error) is cls
    assert error.status == status
    assert error.endpoint == "GET /users"
    assert error.message  # plain words, whatever the body
    assert error.retryable is (cls in (RateLimited, Transient))


def test_parse_error_body_variants() -> None:
    pd = httpx.Response(
        400, json={"error": {"message": "Invalid", "code": 2001, "errors": ["limit bad"]}}
    )
    assert parse_error_body(pd) == (2001, "Invalid", ("limit bad",))
    plain = httpx.Response(
        400,
        json={
            "error": "Because this request was made using an account-level access token, "
            "we were unable to determine the user."
        },
    )
    code, message, _ = parse_error_body(plain)
    assert code is None
    assert message is not None
    assert message.startswith("Because")
    v3 = httpx.Response(
        400, json={"error": {"message": "Bad", "code": 2001, "errors": {"since": ["too far"]}}}
    )
    assert parse_error_body(v3)[2] == ("since: too far",)
    assert parse_error_body(httpx.Response(401, content=b"\xff\xfe not json")) == (None, None, ())
    assert parse_error_body(httpx.Response(401, json=["a", "list"])) == (None, None, ())


def test_forbidden_names_missing_scope() -> None:
    named = httpx.Response(
        403,
        json={
            "error": {
                "message": "Access Denied",
                "code": 2010,
                "errors": ["Missing scope users.read"],
            }
        },
    )
    error = error_from_response(named, endpoint="GET /users")
    assert isinstance(error, Forbidden)
    assert error.missing == ("users.read",)
    unnamed = httpx.Response(403, json={"error": {"message": "Access Denied", "code": 2010}})
    error = error_from_response(unnamed, endpoint="GET /v3/schedules/{id}")
    assert isinstance(error, Forbidden)
    assert error.missing == ("schedules.read",)
    assert "schedules.read" in str(error)


def test_secret_echoed_by_server_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"error": {"message": f"bad token {SECRET}", "errors": [f"token={SECRET}"]}}
        )

    client, _ = make_client(handler)
    with pytest.raises(InvalidCredentials) as info:
        client.list_users()
    for text in (str(info.value), repr(info.value), info.value.message, *info.value.details):
        assert SECRET not in text
    assert "[redacted]" in str(info.value)


def test_429_honours_reset_then_succeeds() -> None:
    calls = iter(
        [
            httpx.Response(429, headers={"ratelimit-reset": "3"}, json={"error": {"code": 2020}}),
            httpx.Response(
                200, json={"users": [{"id": "P1", "name": "A", "email": "a@x"}], "more": False}
            ),
        ]
    )
    client, slept = make_client(lambda request: next(calls))
    assert [u.id for u in client.list_users()] == ["P1"]
    assert len(slept) == 1
    assert 3.0 <= slept[0] <= 3.25
    assert client.requests_made == 2


def test_429_reset_beyond_budget_raises_at_once_with_reset_after() -> None:
    client, slept = make_client(
        lambda request: httpx.Response(429, headers={"ratelimit-reset": "45"}), retry_budget=30
    )
    with pytest.raises(RateLimited) as info:
        client.probe()
    assert info.value.reset_after == 45.0
    assert slept == []
    assert client.requests_made == 1


def test_transient_backoff_is_bounded_by_retries_and_jittered() -> None:
    client, slept = make_client(lambda request: httpx.Response(502), max_retries=3)
    with pytest.raises(Transient):
        client.probe()
    assert client.requests_made == 4
    assert len(slept) == 3
    for attempt, delay in enumerate(slept):
        assert 0 <= delay <= 0.5 * 2**attempt


def test_timeouts_and_connection_errors_are_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, slept = make_client(handler, max_retries=1)
    with pytest.raises(Transient) as info:
        client.probe()
    assert "ConnectError" in str(info.value)
    assert len(slept) == 1


def test_2xx_non_json_is_transient() -> None:
    client, _ = make_client(lambda request: httpx.Response(200, content=b"<html>"), max_retries=0)
    with pytest.raises(Transient):
        client.list_users()


def test_never_retries_client_errors() -> None:
    for status in (400, 401, 402, 403, 404):
        client, slept = make_client(lambda request, s=status: httpx.Response(s, json={}))
        with pytest.raises(PagerDutyError):
            client.probe()
        assert client.requests_made == 1
        assert slept == []


def test_pagination_advances_by_received_count_not_echoed_limit() -> None:
    offsets: list[int] = []
    total = 250

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        offsets.append(offset)
        # A server that caps pages at 60 but echoes the limit we asked for.
        n = min(60, limit, total - offset)
        users = [{"id": f"P{offset + i}", "name": "x", "email": "x@y"} for i in range(n)]
        return httpx.Response(
            200, json={"users": users, "limit": limit, "offset": offset, "more": offset + n < total}
        )

    client, _ = make_client(handler)
    users = client.list_users()
    assert len(users) == total
    assert len({u.id for u in users}) == total
    assert offsets == [0, 60, 120, 180, 240]


def test_pagination_limit_raises_before_asking_past_10000() -> None:
    asked: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        assert offset + limit <= 10_000
        asked.append((offset, limit))
        # Short pages of 99 so the last page has to be shrunk to stay inside the window.
        users = [
            {"id": f"P{offset + i}", "name": "x", "email": "x@y"} for i in range(min(99, limit))
        ]
        return httpx.Response(200, json={"users": users, "more": True})

    client, _ = make_client(handler)
    with pytest.raises(PaginationLimit) as info:
        client.list_users()
    assert info.value.fetched == 10_000
    assert asked[-1] == (9999, 1)


def test_more_true_with_empty_page_does_not_loop() -> None:
    client, _ = make_client(
        lambda request: httpx.Response(200, json={"users": [], "more": True}), max_retries=0
    )
    with pytest.raises(Transient):
        client.list_users()


def test_v3_overlapping_assignments_and_empty_members() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "schedule": {
                    "id": "S3",
                    "name": "Shifts",
                    "time_zone": "Europe/Paris",
                    "type": "schedule_v3",
                    "final_schedule": {
                        "type": "final_schedule",
                        "rendered_coverage_percentage": 100,
                        "computed_shift_assignments": [
                            {
                                "start_time": "2026-03-02T09:00:00Z",
                                "end_time": "2026-03-02T17:00:00Z",
                                "member": {"type": "user_member", "user_id": "PA"},
                            },
                            {
                                "start_time": "2026-03-02T11:00:00Z",
                                "end_time": "2026-03-02T13:00:00Z",
                                "member": {"type": "user_member", "user_id": "PB"},
                            },
                            {
                                "start_time": "2026-03-02T11:00:00Z",
                                "end_time": "2026-03-02T13:00:00Z",
                                "member": {"type": "empty_member"},
                            },
                            {
                                "start_time": "2026-03-03T09:00:00Z",
                                "end_time": "2026-03-03T17:00:00Z",
                                "member": {"type": "user_member", "user_id": "PC"},
                            },
                        ],
                    },
                }
            },
        )

    client, _ = make_client(handler)
    v3 = client.v3_schedule_timeline("S3", now, now + timedelta(days=14))
    assert [u.id for u in v3.on_call_at(now)] == ["PA", "PB"]
    assert [u.id for u in v3.members] == ["PA", "PB", "PC"]
    assert [u.id for u in v3.on_call_at(now + timedelta(hours=2))] == ["PA"]


def test_v3_members_come_from_rotations_and_included_users() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(parse_qs(urlsplit(str(request.url)).query))
        event = {
            "assignment_strategy": {
                "type": "rotating_member_assignment_strategy",
                "members": [
                    {"type": "user_member", "user_id": "PR1"},
                    {"type": "empty_member"},
                    {"type": "user_member", "user_id": "PR2"},
                ],
            }
        }
        return httpx.Response(
            200,
            json={
                "schedule": {
                    "id": "S3",
                    "name": "Shifts",
                    "type": "schedule_v3",
                    "time_zone": "UTC",
                    "rotations": [{"id": "R1", "type": "schedule_rotation", "events": [event]}],
                    "users": [{"id": "PU9", "type": "user_reference", "summary": "Nine"}],
                }
            },
        )

    client, _ = make_client(handler)
    timeline = client.v3_schedule_timeline("S3", now, now + timedelta(hours=1))
    assert [m.id for m in timeline.members] == ["PR1", "PR2", "PU9"]
    assert timeline.shifts == ()
    assert seen[0]["include[]"] == ["final_schedule", "users"]


def test_schedule_timeline_asks_the_detail_with_whole_second_window_and_reads_placeholders() -> (
    None
):
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert urlsplit(str(request.url)).path == "/schedules/PS1"
        seen.append(parse_qs(urlsplit(str(request.url)).query))
        entry = {"start": "2026-03-02T09:00:00Z", "end": "2026-03-02T17:00:00Z"}
        return httpx.Response(
            200,
            json={
                "schedule": {
                    "id": "PS1",
                    "name": "Primary",
                    "users": [
                        {"id": "PA", "type": "user_reference", "summary": "Ann"},
                        {
                            "id": "PGONE",
                            "type": "user_reference",
                            "summary": "Gone",
                            "deleted_at": "2026-01-01T00:00:00Z",
                        },
                    ],
                    "final_schedule": {
                        "rendered_schedule_entries": [
                            {**entry, "user": {"id": "PA", "summary": "Ann"}},
                            {**entry, "user": None},
                        ]
                    },
                }
            },
        )

    client, _ = make_client(handler)
    since = datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC)
    timeline = client.schedule_timeline("PS1", since, since + timedelta(hours=6))
    q = seen[0]
    # Sub-second bounds may render nothing at PagerDuty (api-schema#479): whole seconds only.
    assert (q["since"], q["until"]) == (["2026-03-02T12:00:00Z"], ["2026-03-02T18:00:00Z"])
    assert q["time_zone"] == ["UTC"]
    assert q["overflow"] == ["true"]
    assert "include[]" not in q  # the detail renders entries whenever since/until are set
    assert [u.id for u in timeline.on_call_at(since)] == ["PA"]
    assert [(m.id, m.deleted) for m in timeline.members] == [("PA", False), ("PGONE", True)]


def test_list_schedules_never_asks_the_list_for_on_call() -> None:
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(parse_qs(urlsplit(str(request.url)).query))
        item = {
            "id": "PS1",
            "name": "Primary",
            "users": [{"id": "PA"}],
            "escalation_policies": [],
        }
        return httpx.Response(200, json={"schedules": [item], "more": False})

    client, _ = make_client(handler)
    [schedule] = client.list_schedules()
    assert "include[]" not in seen[0]
    assert "since" not in seen[0]
    assert schedule.member_user_ids == ("PA",)
    assert schedule.escalation_policy_ids == ()


def test_users_page_reads_total_only_when_it_is_a_number() -> None:
    answers = iter([{"total": 25_000}, {"total": None}, {"total": "12"}])

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"users": [{"id": "P1", "email": "a@b"}], "more": True, **next(answers)}
        return httpx.Response(200, json=body)

    client, _ = make_client(handler)
    assert client.users_page(total=True).total == 25_000
    assert client.users_page(total=True).total is None
    assert client.users_page(total=True).total is None


class BlockingLimiter:
    """Records penalties; ``blocked_for`` answers from them (no clock: tests set it)."""

    def __init__(self) -> None:
        self.penalties: dict[str, float] = {}

    def acquire(self, key: str) -> None:
        return None

    def penalize(self, key: str, seconds: float) -> None:
        self.penalties[key] = seconds

    def blocked_for(self, key: str) -> float:
        return self.penalties.get(key, 0.0)


def test_oncalls_429_blocks_only_oncalls_and_is_not_waited_for() -> None:
    """/oncalls has a rate limit of its own: a 429 there must not stall the other reads."""
    limiter = BlockingLimiter()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oncalls":
            return httpx.Response(
                429,
                headers={"ratelimit-reset": "40"},
                json={"error": {"message": "Rate Limit Exceeded", "code": 2020}},
            )
        return httpx.Response(200, json={"users": [], "more": False})

    client, slept = make_client(handler, rate_limiter=limiter, rate_limit_key="conn-1")
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with pytest.raises(RateLimited):
        client.oncalls(["PS1"], now, now + timedelta(hours=1))
    assert slept == []
    assert client.requests_made == 1
    assert limiter.penalties == {"conn-1:oncalls": 40.0}
    # The next /oncalls is refused without a request while the block lasts; others go on.
    with pytest.raises(RateLimited):
        client.oncalls(["PS1"], now, now + timedelta(hours=1))
    assert client.requests_made == 1
    client.probe()
    assert client.requests_made == 2


def test_oncalls_batches_schedules_dedupes_levels_and_skips_permanent_on_calls() -> None:
    asked: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        asked.append(q["schedule_ids[]"])
        assert q["include[]"] == ["users"]
        oncalls = []
        for sid in q["schedule_ids[]"][:2]:
            for level in (1, 2):  # the same schedule at two escalation levels
                oncalls.append(
                    {
                        "escalation_level": level,
                        "schedule": {"id": sid},
                        "user": {"id": f"U{sid}", "name": "N", "email": f"{sid}@x.example"},
                        "start": "2026-03-02T00:00:00Z",
                        "end": "2026-03-03T00:00:00Z",
                    }
                )
        oncalls.append({"schedule": None, "start": None, "end": None, "user": {"id": "UPERM"}})
        return httpx.Response(200, json={"oncalls": oncalls, "more": False})

    client, _ = make_client(handler)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    ids = [f"S{i:03d}" for i in range(250)]
    shifts, users = client.oncalls(ids, now, now + timedelta(hours=1))
    # The batches are read concurrently, so they may arrive in any order; each id once, and no
    # request asks about more than 100 (the facts file's "per <= 100").
    assert sorted(len(a) for a in asked) == [50, 100, 100]
    assert sorted(sid for a in asked for sid in a) == ids
    assert len(shifts) == 6  # two schedules per request, each once despite two levels
    assert "UPERM" not in {s.user.id for s in shifts}
    assert users["US000"].email == "S000@x.example"


def test_an_oncalls_batch_of_100_real_ids_pages_to_the_end_in_a_short_url() -> None:
    """100 schedules can be on call at several levels: more than a page of rows. Every page is
    read (``more``), and the URL stays far below the 8 KB request line servers accept."""
    urls: list[str] = []
    rows_per_schedule = 3

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        q = parse_qs(urlsplit(str(request.url)).query)
        every = [
            {
                "escalation_level": level,
                "schedule": {"id": sid, "type": "schedule_v3_reference"},
                "user": {"id": f"U{sid}{level}", "name": "N", "email": f"{sid}{level}@x.example"},
                "start": "2026-03-02T00:00:00Z",
                "end": "2026-03-03T00:00:00Z",
            }
            for sid in q["schedule_ids[]"]
            for level in range(rows_per_schedule)
        ]
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        page = every[offset : offset + limit]
        return httpx.Response(200, json={"oncalls": page, "more": offset + len(page) < len(every)})

    client, _ = make_client(handler)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    ids = [f"P{i:06d}" for i in range(100)]  # PagerDuty ids are 7 characters
    shifts, _ = client.oncalls(ids, now, now + timedelta(hours=6))
    assert len(shifts) == 100 * rows_per_schedule
    assert len(urls) == 3  # 300 rows, 100 a page
    assert max(len(u) for u in urls) < 4_000


def test_check_scopes_and_authorize_url() -> None:
    assert check_scopes("openid", ["users.read", "schedules.read"]) == (
        "users.read",
        "schedules.read",
    )
    assert check_scopes(["users.read", "schedules.read", "openid"]) == ()
    assert check_scopes(None) == ("users.read", "schedules.read")
    url = build_authorization_url(
        "https://identity.test",
        "cid",
        "https://app/cb",
        ["openid", "users.read"],
        "st4te",
        "v" * 64,
    )
    q = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/oauth/authorize"
    assert q["response_type"] == ["code"]
    assert q["client_id"] == ["cid"]
    assert q["scope"] == ["openid users.read"]
    assert q["state"] == ["st4te"]
    assert q["code_challenge_method"] == ["S256"]
    assert "v" * 64 not in url
    import base64
    import hashlib

    expected = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 64).digest()).rstrip(b"=").decode()
    assert q["code_challenge"] == [expected]


def test_limiter_wait_counts_against_the_budget_and_its_refusal_is_final() -> None:
    class SlowLimiter:
        calls = 0

        def acquire(self, key: str) -> None:
            self.calls += 1
            if self.calls > 1:
                raise RateLimited("shared limit used up", reset_after=5.0, endpoint="rate limiter")

        def penalize(self, key: str, seconds: float) -> None:
            return None

        def blocked_for(self, key: str) -> float:
            return 0.0

    limiter = SlowLimiter()
    client, slept = make_client(lambda request: httpx.Response(502), rate_limiter=limiter)
    with pytest.raises(RateLimited) as info:
        client.probe()
    # One request went out, failed; the retry could not get a slot and was not retried again.
    assert info.value.endpoint == "rate limiter"
    assert client.requests_made == 1
    assert limiter.calls == 2
    assert len(slept) == 1


def test_oncalls_counted_asks_the_batches_given_and_counts_rows_at_since() -> None:
    """The check packs its own batches (workers.pagerduty.window.pack) and keeps, per schedule,
    the rows it had at the instant asked, repeats included: what its next batch will cost."""
    asked: list[list[str]] = []
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        asked.append(q["schedule_ids[]"])
        rows = [
            {
                "escalation_level": level,
                "schedule": {"id": sid},
                "user": {"id": f"U{sid}", "name": "N", "email": f"{sid}@x.example"},
                "start": start,
                "end": end,
            }
            for sid in q["schedule_ids[]"]
            if sid != "SNONE"
            for level in ((1, 2) if sid == "STWO" else (1,))
            for start, end in (
                ("2026-03-02T00:00:00Z", "2026-03-02T13:00:00Z"),  # on call at 12:00
                ("2026-03-02T13:00:00Z", "2026-03-02T18:00:00Z"),  # later: not counted
            )
        ]
        return httpx.Response(200, json={"oncalls": rows, "more": False})

    client, _ = make_client(handler)
    batches = [["STWO"], ["SONE", "SNONE"]]
    shifts, _, rows = client.oncalls_counted(batches, now, now + timedelta(hours=6))

    assert sorted(asked) == [["SONE", "SNONE"], ["STWO"]]
    assert rows == {"STWO": 2, "SONE": 1, "SNONE": 0}
    assert len(shifts) == 4  # deduplicated across levels, as oncalls() does

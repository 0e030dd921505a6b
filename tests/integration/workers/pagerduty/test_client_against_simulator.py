"""The client, OAuth helpers and rate limiter against the PagerDuty simulator over real sockets."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from models.clock import utcnow
from pagerduty_sim.generator import large_account
from pagerduty_sim.server import SimulatorHandle, start_simulator
from workers.pagerduty import id_token, oauth
from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    IdTokenInvalid,
    InvalidClient,
    InvalidCredentials,
    InvalidGrant,
    NoApiAccess,
    NotFound,
    PagerDutyError,
    PaginationLimit,
    RateLimited,
    Transient,
    UnknownRegion,
)
from workers.pagerduty.ratelimit import RedisRateLimiter
from workers.pagerduty.records import Credential
from workers.pagerduty.snapshot import read_snapshot
from workers.pagerduty.transport import ACCEPT

REDIRECT = "http://127.0.0.1:9/callback"
MAIN_KEY = "u+mainAccountKey0000001"
MAIN_USER_KEY = "u+mainUserKeyBob000001"
LIMITER_KEY = "u+mainLimiterKey000001"
EU_KEY = "u+euAccountKey00000001"
NOPAY_KEY = "u+noPayKey000000000001"
PAGE_KEYS = {n: f"u+page{n:03d}Key00000001" for n in (0, 1, 100, 101)}
MAIN_SECRET = "main-client-secret-XYZ123"
EPOCH = "2024-01-01T00:00:00Z"


def _users(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i:04d}",
            "name": f"{prefix} {i}",
            "email": f"{prefix.lower()}{i}@x.example",
        }
        for i in range(n)
    ]


def scenario() -> dict[str, Any]:
    main_users = [
        {"id": "PADMIN1", "name": "Ada", "email": "ada@main.example", "role": "admin"},
        {"id": "PUBOB01", "name": "Bob", "email": "Bob@Main.example"},
        {"id": "PUCAROL", "name": "Carol", "email": "carol@main.example"},
        {"id": "PUDAVE1", "name": "Dave", "email": "dave@main.example"},
        {"id": "PUERIN1", "name": "Erin", "email": "erin@main.example"},
        {"id": "PUFRANK", "name": "Frank", "email": "frank@main.example"},
        {"id": "PUGINA1", "name": "Gina", "email": "gina@main.example"},
    ]
    weekly = {"start": EPOCH, "rotation_turn_length_seconds": 604800}
    accounts: list[dict[str, Any]] = [
        {"id": f"page{n}", "users": _users(f"PP{n}X", n)} for n in (0, 1, 100, 101)
    ]
    accounts += [
        {
            "id": "main",
            "subdomain": "mainco",
            "users": main_users,
            "schedules": [
                {
                    "id": "PSV2OVR",
                    "name": "Primary",
                    "layers": [{**weekly, "users": ["PADMIN1", "PUBOB01", "PUCAROL"]}],
                    # An override puts Dave, who is on no layer, on call right now.
                    "overrides": [{"start": "now-1h", "end": "now+2h", "user_id": "PUDAVE1"}],
                },
                {
                    "id": "PSV2DAY",
                    "name": "Daily",
                    "time_zone": "Europe/Paris",
                    "layers": [
                        {
                            "start": EPOCH,
                            "rotation_turn_length_seconds": 86400,
                            "users": ["PUBOB01", "PUCAROL"],
                        }
                    ],
                },
                {
                    "id": "PSRESTR",
                    "name": "Restricted",
                    "restricted": True,
                    "layers": [{**weekly, "users": ["PUGINA1"]}],
                },
                {
                    "id": "PSV3PAI",
                    "name": "Shift pair",
                    "version": 3,
                    "time_zone": "Asia/Tokyo",
                    "rotations": [
                        {
                            "events": [
                                {
                                    "start_time": EPOCH,
                                    "end_time": "2024-01-02T00:00:00Z",
                                    "recurrence": ["RRULE:FREQ=DAILY;INTERVAL=1"],
                                    "assignment_strategy": {
                                        "type": "every_member_assignment_strategy",
                                        "members": ["PUERIN1", "PUFRANK", None],
                                    },
                                }
                            ]
                        }
                    ],
                },
                {
                    "id": "PSV3ROT",
                    "name": "Shift rotating",
                    "version": 3,
                    "rotations": [
                        {
                            "events": [
                                {
                                    "start_time": EPOCH,
                                    "end_time": "2024-01-01T08:00:00Z",
                                    "recurrence": ["RRULE:FREQ=DAILY;INTERVAL=1"],
                                    "assignment_strategy": {
                                        "type": "rotating_member_assignment_strategy",
                                        "members": ["PUCAROL", "PUDAVE1"],
                                    },
                                }
                            ]
                        }
                    ],
                },
            ],
            "escalation_policies": [
                {
                    "id": "PEMAIN1",
                    "name": "Main",
                    "rules": [
                        {"targets": [{"type": "schedule", "id": "PSV2OVR"}]},
                        {"targets": [{"type": "schedule", "id": "PSV2DAY"}]},
                    ],
                }
            ],
        },
        {
            "id": "euco",
            "region": "eu",
            "subdomain": "euco",
            "users": _users("PEU", 3),
            "schedules": [
                {
                    "id": "PSEU001",
                    "name": "EU",
                    "layers": [{**weekly, "users": ["PEU0000", "PEU0001"]}],
                }
            ],
        },
        {"id": "nopay", "api_access": False, "users": _users("PNP", 1)},
    ]
    return {
        "name": "client-tests",
        "accounts": accounts,
        "api_keys": [
            *({"label": f"page{n}", "key": k, "account": f"page{n}"} for n, k in PAGE_KEYS.items()),
            {"label": "main-account", "key": MAIN_KEY, "account": "main"},
            {"label": "main-limiter", "key": LIMITER_KEY, "account": "main"},
            {
                "label": "main-bob",
                "key": MAIN_USER_KEY,
                "account": "main",
                "kind": "user",
                "user_id": "PUBOB01",
            },
            {"label": "eu-account", "key": EU_KEY, "account": "euco"},
            {"label": "nopay", "key": NOPAY_KEY, "account": "nopay"},
        ],
        "oauth_apps": [
            {
                "label": "main-oauth",
                "client_id": "main-client",
                "client_secret": MAIN_SECRET,
                "account": "main",
                "scopes": ["openid", "users.read", "schedules.read", "oncalls.read"],
                "authorize_as": "PADMIN1",
            },
            {
                "label": "main-users-only",
                "client_id": "users-only-client",
                "client_secret": "users-only-secret-1234",
                "account": "main",
                "scopes": ["openid", "users.read"],
                "authorize_as": "PADMIN1",
            },
            {
                "label": "eu-oauth",
                "client_id": "eu-client",
                "client_secret": "eu-secret-123456",
                "account": "euco",
                "scopes": ["openid", "users.read", "schedules.read", "oncalls.read"],
                "authorize_as": "PEU0000",
            },
        ],
    }


@pytest.fixture(scope="module")
def module_sim() -> Iterator[SimulatorHandle]:
    with start_simulator(scenario(), port=0, rate_limit_per_minute=960, auto_approve=True) as sim:
        yield sim


@pytest.fixture
def sim(module_sim: SimulatorHandle) -> Iterator[SimulatorHandle]:
    yield module_sim
    # Faults, rate-limit modes, clock, tokens, counters: back to the start for the next test.
    module_sim.control.post("/reset").raise_for_status()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def client_for(
    sim: SimulatorHandle, http: httpx.Client, key: str, *, eu: bool = False, **kwargs: Any
) -> PagerDutyClient:
    kwargs.setdefault("sleep", lambda seconds: None)
    base = sim.eu_base_url if eu else sim.base_url
    return PagerDutyClient(base, Credential("api_key", key), http=http, **kwargs)


def advance_clock(sim: SimulatorHandle, slept: list[float]) -> Callable[[float], None]:
    """A sleep that moves the simulator's virtual clock instead of waiting."""

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        sim.control.post("/clock", json={"advance_seconds": seconds}).raise_for_status()

    return sleep


def stats(sim: SimulatorHandle) -> dict[str, Any]:
    return sim.control.get("/stats").json()


def statuses_for(sim: SimulatorHandle, label: str) -> dict[int, int]:
    """Answers the simulator gave one credential (immune to late answers of other tests)."""
    out: dict[int, int] = {}
    for r in sim.control.get("/requests").json()["requests"]:
        if r["credential"] == label:
            out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def oncall_now(sim: SimulatorHandle, account: str, schedule: str) -> set[str]:
    body = sim.control.get(f"/accounts/{account}/schedules/{schedule}/oncall").json()
    return set(body["user_ids"])


def authorize(
    sim: SimulatorHandle, client_id: str, scopes: tuple[str, ...] = oauth.DEFAULT_SCOPES
) -> tuple[str, str]:
    """Run the browser leg (auto-approved) and return (code, verifier)."""
    verifier, state = oauth.new_code_verifier(), oauth.new_state()
    url = oauth.build_authorization_url(
        sim.identity_url, client_id, REDIRECT, scopes, state, verifier
    )
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == [state]
    return query["code"][0], verifier


def connect(
    sim: SimulatorHandle, client_id: str = "main-client", secret: str = MAIN_SECRET
) -> oauth.TokenSet:
    code, verifier = authorize(sim, client_id)
    return oauth.exchange_code(sim.identity_url, client_id, secret, code, REDIRECT, verifier)


# --- pagination ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "pages"), [(0, 1), (1, 1), (100, 1), (101, 2)])
def test_pagination_edges(sim: SimulatorHandle, http: httpx.Client, n: int, pages: int) -> None:
    client = client_for(sim, http, PAGE_KEYS[n])
    users = client.list_users()
    assert len(users) == n
    assert len({u.id for u in users}) == n
    assert client.requests_made == pages
    assert stats(sim)["by_credential"][f"page{n}"] == pages
    requests = sim.control.get("/requests").json()["requests"]
    assert {r["accept"] for r in requests} == {ACCEPT}
    assert all("limit=100" in r["query"] for r in requests)


def test_more_than_10000_users_raises_pagination_limit(http: httpx.Client) -> None:
    with start_simulator(large_account(n_users=10_050, n_schedules=1), port=0) as sim:
        client = client_for(sim, http, "u+largeReadOnlyKey000001")
        with pytest.raises(PaginationLimit) as info:
            client.list_users()
        assert info.value.fetched == 10_000
        assert client.requests_made == 100
        # We stopped before PagerDuty had to refuse us.
        assert set(stats(sim)["by_status"]) == {"200"}


# --- errors -------------------------------------------------------------------------------------


def test_401_bodies_are_not_json_by_default_and_either_kind_is_invalid_credentials(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    """PagerDuty's 401 is often not JSON at all (go-pagerduty#553): parsed defensively."""
    bad = client_for(sim, http, "u+notARealKey00000001")
    with pytest.raises(InvalidCredentials) as info:
        bad.probe()
    assert info.value.status == 401
    assert info.value.code is None
    assert "not PagerDuty's JSON" in str(info.value)
    sim.control.post("/settings", json={"auth_error_mode": "json"}).raise_for_status()
    with pytest.raises(InvalidCredentials) as info:
        bad.probe()
    assert info.value.code == 2006
    assert bad.requests_made == 2  # never retried


def test_402_403_404_400(sim: SimulatorHandle, http: httpx.Client) -> None:
    with pytest.raises(NoApiAccess):
        client_for(sim, http, NOPAY_KEY).probe()

    tokens = connect(sim, "users-only-client", "users-only-secret-1234")
    # The app has no schedules.read: PagerDuty grants only openid for the whole request.
    assert tokens.scopes == {"openid"}
    assert oauth.check_scopes(tokens.scopes) == ("users.read", "schedules.read")
    code, verifier = authorize(sim, "users-only-client", ("openid", "users.read"))
    tokens = oauth.exchange_code(
        sim.identity_url, "users-only-client", "users-only-secret-1234", code, REDIRECT, verifier
    )
    assert tokens.missing_scopes == ("schedules.read",)
    users_only = PagerDutyClient(sim.base_url, tokens.credential, http=http)
    assert len(users_only.list_users()) == 7
    with pytest.raises(Forbidden) as forbidden:
        users_only.list_schedules()
    assert forbidden.value.missing == ("schedules.read",)
    assert forbidden.value.code == 2010

    main = client_for(sim, http, MAIN_KEY)
    now = utcnow()
    with pytest.raises(NotFound):
        main.v3_schedule_timeline("PNOSUCH", now, now + timedelta(days=1))
    with pytest.raises(BadRequest):  # a v2 schedule on the v3 endpoint
        main.v3_schedule_timeline("PSV2OVR", now, now + timedelta(days=1))
    assert main.key_level() == "account"  # /users/me: 400 with a plain-string error
    assert client_for(sim, http, MAIN_USER_KEY).key_level() == "user"
    assert PagerDutyClient(sim.base_url, connect(sim).credential, http=http).key_level() == "user"
    assert main.requests_made == 3


def test_429_with_headers_waits_for_reset(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 2}).raise_for_status()
    slept: list[float] = []
    penalties: list[float] = []

    class RecordingLimiter:
        def acquire(self, key: str) -> None:
            return None

        def penalize(self, key: str, seconds: float) -> None:
            penalties.append(seconds)

    client = client_for(
        sim,
        http,
        MAIN_KEY,
        sleep=advance_clock(sim, slept),
        rate_limiter=RecordingLimiter(),
        retry_budget=120,
    )
    client.probe()
    client.probe()
    result = client.probe()  # the third is over the limit: 429, wait for the reset, retry
    assert result.ratelimit_limit == 2
    assert len(slept) == 1
    assert 55 <= slept[0] <= 60.25
    assert penalties
    assert 55 <= penalties[0] <= 60
    assert stats(sim)["by_status"] == {"200": 3, "429": 1}


def test_429_reset_longer_than_budget_raises_for_the_task(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 1}).raise_for_status()
    slept: list[float] = []
    client = client_for(sim, http, MAIN_KEY, sleep=slept.append)  # budget 30 s < ~60 s reset
    client.probe()
    with pytest.raises(RateLimited) as info:
        client.probe()
    assert info.value.reset_after is not None
    assert info.value.reset_after > 30
    assert slept == []
    assert client.requests_made == 2


def test_bare_429_backs_off_with_jitter(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 1, "bare_429": True}).raise_for_status()
    slept: list[float] = []
    client = client_for(sim, http, MAIN_KEY, sleep=slept.append, max_retries=2)
    client.probe()
    with pytest.raises(RateLimited) as info:
        client.probe()
    assert info.value.reset_after is None
    assert client.requests_made == 4
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.5
    assert 0 <= slept[1] <= 1.0
    # When the window has passed by the time of the retry (virtual clock), the retry succeeds.
    slept.clear()

    def sleep_a_minute(seconds: float) -> None:
        slept.append(seconds)
        sim.control.post("/clock", json={"advance_seconds": 61}).raise_for_status()

    client = client_for(sim, http, MAIN_KEY, max_retries=3, sleep=sleep_a_minute)
    assert client.probe().ratelimit_remaining == 0
    assert client.requests_made == 2
    assert len(slept) == 1
    assert 0 <= slept[0] <= 0.5


def test_5xx_retried_then_succeeds_or_raises(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.post(
        "/faults", json={"kind": "error", "status": 500, "path_prefix": "/users", "times": 2}
    ).raise_for_status()
    slept: list[float] = []
    client = client_for(sim, http, MAIN_KEY, sleep=slept.append)
    assert len(client.list_users()) == 7
    assert client.requests_made == 3
    assert len(slept) == 2

    sim.control.post("/faults", json={"kind": "error", "status": 503, "path_prefix": "/schedules"})
    client = client_for(sim, http, MAIN_KEY, max_retries=2)
    with pytest.raises(Transient) as info:
        client.list_schedules()
    assert info.value.status == 503
    assert client.requests_made == 3


@pytest.mark.parametrize("kind", ["non_json", "truncated"])
def test_unparseable_bodies_are_transient(
    sim: SimulatorHandle, http: httpx.Client, kind: str
) -> None:
    sim.control.post("/faults", json={"kind": kind, "path_prefix": "/users"}).raise_for_status()
    client = client_for(sim, http, MAIN_KEY, max_retries=1)
    with pytest.raises(Transient):
        client.list_users()
    assert client.requests_made == 2


def test_timeout_is_transient(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.post(
        "/faults", json={"kind": "timeout", "seconds": 1.5, "path_prefix": "/users", "times": 1}
    ).raise_for_status()
    client = client_for(sim, http, MAIN_KEY, timeout=0.3, max_retries=0)
    with pytest.raises(Transient) as info:
        client.probe()
    assert "in time" in str(info.value)
    retrying = client_for(sim, http, MAIN_KEY, timeout=0.3)
    sim.control.post(
        "/faults", json={"kind": "timeout", "seconds": 1.5, "path_prefix": "/users", "times": 1}
    ).raise_for_status()
    retrying.probe()  # the second attempt is answered
    assert retrying.requests_made == 2


# --- schedules ----------------------------------------------------------------------------------


BOUND = {"PSV2OVR", "PSV2DAY", "PSV3PAI", "PSV3ROT"}


def test_snapshot_reads_on_call_from_the_endpoints_that_render_it(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    """The schedule list never renders who is on call (api-schema#430): the snapshot takes it
    from /oncalls and the v3 detail, and agrees with the simulator's own answer."""
    client = client_for(sim, http, MAIN_KEY)
    snap = read_snapshot(client, bound=BOUND)
    by_id = {s.id: s for s in snap.schedules}
    assert set(by_id) == {"PSV2OVR", "PSV2DAY", "PSRESTR", "PSV3PAI", "PSV3ROT"}
    assert len(snap.users) == 7
    assert {u.email for u in snap.users} >= {"Bob@Main.example"}

    primary = by_id["PSV2OVR"]
    assert primary.version == "v2"
    assert primary.member_user_ids == ("PADMIN1", "PUBOB01", "PUCAROL")
    assert [u.id for u in snap.on_call("PSV2OVR")] == ["PUDAVE1"]  # the override wins
    pair = by_id["PSV3PAI"]
    assert pair.version == "v3"
    assert pair.time_zone == "Asia/Tokyo"
    assert {u.id for u in snap.on_call("PSV3PAI")} == {"PUERIN1", "PUFRANK"}  # overlapping
    assert set(pair.member_user_ids) == {"PUERIN1", "PUFRANK"}
    assert set(by_id["PSV3ROT"].member_user_ids) == {"PUCAROL", "PUDAVE1"}  # from its rotation
    for sid in BOUND:
        assert {u.id for u in snap.on_call(sid)} == oncall_now(sim, "main", sid), sid
    assert "PSRESTR" not in snap.timelines  # not bound: its on-call is never read

    # users + v2 list + v3 list + one detail per v3 schedule + one /oncalls for both bound v2.
    assert snap.requests_made == 6 == client.requests_made
    assert snap.requests_by_endpoint == {
        "GET /users": 1,
        "GET /schedules": 1,
        "GET /v3/schedules": 1,
        "GET /v3/schedules/{id}": 2,
        "GET /oncalls": 1,
    }
    requests = sim.control.get("/requests").json()["requests"]
    listed = [r for r in requests if r["endpoint"] == "GET /schedules"]
    assert listed
    assert all("include" not in r["query"] for r in listed)


def test_a_schedule_no_policy_uses_is_read_from_its_detail(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    client = client_for(sim, http, MAIN_KEY)
    snap = read_snapshot(client, bound={"PSRESTR"})  # admin key: sees the restricted one
    assert {u.id for u in snap.on_call("PSRESTR")} == oncall_now(sim, "main", "PSRESTR")
    assert snap.requests_by_endpoint.get("GET /schedules/{id}") == 1
    assert "GET /oncalls" not in snap.requests_by_endpoint


def test_oncalls_refused_falls_back_to_details(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.post("/rate_limit", json={"oncalls_per_minute": 1}).raise_for_status()
    client = client_for(sim, http, MAIN_KEY)
    client.oncalls(["PSV2OVR"], utcnow(), utcnow() + timedelta(hours=1))
    # /oncalls' own limit is used up: the snapshot reads each bound v2 schedule's detail instead.
    snap = read_snapshot(client, bound={"PSV2OVR", "PSV2DAY"})
    assert [u.id for u in snap.on_call("PSV2OVR")] == ["PUDAVE1"]
    assert {u.id for u in snap.on_call("PSV2DAY")} == oncall_now(sim, "main", "PSV2DAY")
    assert snap.requests_by_endpoint["GET /schedules/{id}"] == 2


def test_v3_gated_by_an_ability_keeps_v2_syncing(sim: SimulatorHandle, http: httpx.Client) -> None:
    sim.control.patch(
        "/accounts/main", json={"required_abilities": {"/v3/schedules": "v3_schedules"}}
    ).raise_for_status()
    snap = read_snapshot(client_for(sim, http, MAIN_KEY), bound={"PSV2OVR", "PSV3PAI"})
    assert not snap.v3_listed
    assert "HTTP 402" in snap.notices[0]
    assert [u.id for u in snap.on_call("PSV2OVR")] == ["PUDAVE1"]
    assert "PSV3PAI" not in {s.id for s in snap.schedules}


def test_deleted_user_stays_on_the_schedule_as_an_inactive_placeholder(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    sim.control.delete("/accounts/main/users/PUCAROL").raise_for_status()
    snap = read_snapshot(client_for(sim, http, MAIN_KEY), bound={"PSV2OVR"})
    users = {u.id: u for u in snap.users}
    assert users["PUCAROL"].active is False
    assert users["PUCAROL"].email is None
    assert "PUCAROL" in {s.id: s for s in snap.schedules}["PSV2OVR"].member_user_ids
    assert len([u for u in snap.users if u.active]) == 6


def test_non_admin_user_key_does_not_see_restricted(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    snap = read_snapshot(client_for(sim, http, MAIN_USER_KEY), bound={"PSRESTR"})
    assert "PSRESTR" not in {s.id for s in snap.schedules}
    assert len(snap.schedules) == 4
    assert "PSRESTR" not in snap.timelines  # not listed: its rotation keeps its state


def test_on_call_follows_the_virtual_clock(sim: SimulatorHandle, http: httpx.Client) -> None:
    # Three hours on, the override is over and the weekly layer decides again.
    sim.control.post("/clock", json={"advance_seconds": 3 * 3600}).raise_for_status()
    sim_now = datetime.fromisoformat(sim.control.get("/clock").json()["now"].replace("Z", "+00:00"))
    client = client_for(sim, http, MAIN_KEY)
    timeline = client.schedule_timeline("PSV2OVR", sim_now, sim_now + timedelta(hours=1))
    on_call = {u.id for u in timeline.on_call_at(sim_now.replace(microsecond=0))}
    assert on_call == oncall_now(sim, "main", "PSV2OVR")
    assert "PUDAVE1" not in on_call


def test_the_detail_shows_the_coming_handoffs(sim: SimulatorHandle, http: httpx.Client) -> None:
    """One detail read over the next hours also says who is next, and when."""
    sim_now = datetime.fromisoformat(sim.control.get("/clock").json()["now"].replace("Z", "+00:00"))
    timeline = client_for(sim, http, MAIN_KEY).schedule_timeline(
        "PSV2OVR", sim_now, sim_now + timedelta(hours=6)
    )
    dave = [s for s in timeline.shifts if s.user.id == "PUDAVE1"]
    assert dave
    assert dave[0].end is not None
    after = dave[0].end + timedelta(seconds=1)
    assert {u.id for u in timeline.on_call_at(after)} != {"PUDAVE1"}


def test_eu_account_on_eu_url(sim: SimulatorHandle, http: httpx.Client) -> None:
    eu = client_for(sim, http, EU_KEY, eu=True)
    snap = read_snapshot(eu, bound={"PSEU001"})
    assert len(snap.users) == 3
    assert [s.id for s in snap.schedules] == ["PSEU001"]
    assert stats(sim)["by_endpoint"]["GET /eu/users"] == 1
    with pytest.raises(InvalidCredentials):
        client_for(sim, http, EU_KEY).probe()  # the US host does not know an EU key


def test_account_past_10000_users_syncs_on_referenced_users(http: httpx.Client) -> None:
    """25,000 users: PagerDuty cannot list them (offset + limit > 10000 answers 400 code
    2002), so only the people bound schedules name are read."""
    scenario = large_account(n_users=25_000, n_schedules=20, seed=3)
    bound = sorted(scenario.accounts["large"].schedules)[:5]
    with start_simulator(scenario, port=0) as sim:
        client = client_for(sim, http, "u+largeReadOnlyKey000001")
        snap = read_snapshot(client, bound=bound)
        assert not snap.users_complete
        people = {u.id for u in snap.users}
        for sid in bound:
            assert set({s.id: s for s in snap.schedules}[sid].member_user_ids) <= people
            assert {u.id for u in snap.on_call(sid)} == oncall_now(sim, "large", sid)
            assert {u.id for u in snap.on_call(sid)} <= people
        assert len(people) < 200
        assert snap.requests_by_endpoint["GET /users"] == 1
        assert set(stats(sim)["by_status"]) == {"200"}  # never asked past the cap


# --- OAuth --------------------------------------------------------------------------------------


def test_oauth_exchange_refresh_and_reused_refresh_token(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    tokens = connect(sim)
    assert tokens.missing_scopes == ()
    assert tokens.token_type == "bearer"
    assert tokens.refresh_token
    assert tokens.id_token
    assert tokens.expires_at is not None
    api = PagerDutyClient(sim.base_url, tokens.credential, http=http)
    api.probe()
    assert len(api.list_schedules()) == 3  # the admin sees the restricted one too

    renewed = oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    assert renewed.refresh_token != tokens.refresh_token
    PagerDutyClient(sim.base_url, renewed.credential, http=http).probe()
    with pytest.raises(InvalidGrant) as info:  # PagerDuty rotates: the old one is dead
        oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    assert info.value.code == "invalid_grant"
    assert info.value.status == 400

    code, verifier = authorize(sim, "main-client")
    oauth.exchange_code(sim.identity_url, "main-client", MAIN_SECRET, code, REDIRECT, verifier)
    with pytest.raises(InvalidGrant):  # codes are single-use
        oauth.exchange_code(sim.identity_url, "main-client", MAIN_SECRET, code, REDIRECT, verifier)
    code, _ = authorize(sim, "main-client")
    with pytest.raises(InvalidGrant):  # wrong PKCE verifier
        oauth.exchange_code(sim.identity_url, "main-client", MAIN_SECRET, code, REDIRECT, "x" * 64)
    with pytest.raises(InvalidClient):
        oauth.refresh(sim.identity_url, "main-client", "wrong-secret-000", renewed.refresh_token)


def test_oauth_expired_access_token_is_invalid_credentials(
    sim: SimulatorHandle, http: httpx.Client
) -> None:
    tokens = connect(sim)
    sim.control.post("/tokens/expire", json={"token": tokens.access_token}).raise_for_status()
    with pytest.raises(InvalidCredentials):
        PagerDutyClient(sim.base_url, tokens.credential, http=http).probe()


def test_token_endpoint_failures_are_transient(sim: SimulatorHandle) -> None:
    tokens = connect(sim)
    sim.control.post(
        "/faults", json={"kind": "error", "status": 502, "path_prefix": "/identity/oauth/token"}
    ).raise_for_status()
    with pytest.raises(Transient):
        oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    sim.control.delete("/faults").raise_for_status()
    sim.control.post(
        "/faults", json={"kind": "non_json", "path_prefix": "/identity/oauth/token"}
    ).raise_for_status()
    with pytest.raises(Transient):
        oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    with pytest.raises(Transient):
        oauth.refresh("http://127.0.0.1:1/identity", "main-client", MAIN_SECRET, "rt-whatever")


def test_id_token_verification_and_region(sim: SimulatorHandle, http: httpx.Client) -> None:
    """PagerDuty's real id_token: iss .../global/oauth/anonymous, aud a list with the API host
    and our client id, azp our client id, region "UnitedStates"."""
    us = connect(sim)
    assert us.id_token is not None
    issuer = oauth.issuer_for(sim.identity_url)
    claims = id_token.verify_id_token(
        us.id_token, sim.jwks_url, "main-client", http=http, issuer=issuer
    )
    assert (claims.account_id, claims.user_id, claims.subdomain, claims.region) == (
        "main",
        "PADMIN1",
        "mainco",
        "UnitedStates",
    )
    assert claims.audience == (sim.base_url, "main-client")
    assert claims.api_base_url == sim.base_url
    assert id_token.region_for_claims(claims, sim.base_url, sim.eu_base_url) == "us"

    eu = connect(sim, "eu-client", "eu-secret-123456")
    assert eu.id_token is not None
    eu_claims = id_token.verify_id_token(
        eu.id_token, sim.jwks_url, "eu-client", http=http, issuer=issuer
    )
    assert eu_claims.api_base_url == sim.eu_base_url
    # The EU URL extends the US one here: only an exact match may decide.
    assert id_token.region_for_claims(eu_claims, sim.base_url, sim.eu_base_url) == "eu"
    PagerDutyClient(eu_claims.api_base_url, eu.credential, http=http).probe()
    with pytest.raises(UnknownRegion):
        id_token.region_for_api_url("https://api.example.net", sim.base_url, sim.eu_base_url)

    # A token issued to another app of the same account is refused (client id not in aud/azp).
    with pytest.raises(IdTokenInvalid, match="not issued to this OAuth app"):
        id_token.verify_id_token(us.id_token, sim.jwks_url, "users-only-client", http=http)

    head, body, sig = us.id_token.split(".")
    tampered = ".".join([head, body, sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")])
    with pytest.raises(IdTokenInvalid):
        id_token.verify_id_token(tampered, sim.jwks_url, "main-client", http=http)
    with pytest.raises(IdTokenInvalid, match="expired"):
        id_token.verify_id_token(
            us.id_token,
            sim.jwks_url,
            "main-client",
            http=http,
            now=utcnow() + timedelta(hours=2),  # exp is one hour after nbf
        )
    with pytest.raises(IdTokenInvalid):
        id_token.verify_id_token(
            us.id_token,
            sim.jwks_url,
            "main-client",
            http=http,
            issuer="https://identity.pagerduty.com",
        )


def test_refresh_answers_without_an_id_token(sim: SimulatorHandle) -> None:
    tokens = connect(sim)
    assert tokens.refresh_token is not None
    renewed = oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    assert renewed.id_token is None
    assert renewed.access_token


def test_there_is_no_revocation_endpoint_to_call(sim: SimulatorHandle) -> None:
    """PagerDuty documents none; the client has no revoke, and the simulator's path is 404."""
    assert not hasattr(oauth, "revoke")
    response = httpx.post(sim.identity_url + "/oauth/revoke", data={"token": "x"})
    assert response.status_code == 404


# --- the shared rate limiter --------------------------------------------------------------------


@pytest.fixture
def limiter_prefix() -> Iterator[str]:
    prefix = f"rrpdtest-pdsim-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def _burst(
    sim: SimulatorHandle, make: Callable[[], PagerDutyClient], n_threads: int, each: int
) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = []
    lock = threading.Lock()

    def run() -> None:
        client = make()
        for _ in range(each):
            try:
                client.probe()
                result: BaseException | None = None
            except PagerDutyError as exc:
                result = exc
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_redis_limiter_keeps_a_fleet_burst_under_the_limit(
    sim: SimulatorHandle, limiter_prefix: str
) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 20}).raise_for_status()
    limiter_redis = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    # Each thread is a "worker" with its own limiter object and HTTP pool: only Redis is shared.
    outcomes = _burst(
        sim,
        lambda: client_for(
            sim,
            httpx.Client(),
            LIMITER_KEY,
            max_retries=0,
            rate_limiter=RedisRateLimiter(
                limiter_redis, per_minute=18, burst=18, key_prefix=limiter_prefix, max_wait=0.5
            ),
        ),
        n_threads=8,
        each=4,
    )
    assert statuses_for(sim, "main-limiter") == {200: 18}  # PagerDuty never said 429
    limited = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(limited) == 32 - 18
    assert all(o.endpoint == "rate limiter" for o in limited)
    assert all(o.reset_after and o.reset_after > 0.5 for o in limited)

    # The same burst without the shared limiter runs into PagerDuty's 429s.
    sim.control.post("/rate_limit/reset").raise_for_status()
    sim.control.post("/stats/reset").raise_for_status()
    assert statuses_for(sim, "main-limiter") == {}
    _burst(sim, lambda: client_for(sim, httpx.Client(), LIMITER_KEY, max_retries=0), 8, 4)
    assert statuses_for(sim, "main-limiter") == {200: 20, 429: 12}
    limiter_redis.close()


# --- secrets ------------------------------------------------------------------------------------


def test_no_secret_in_errors_reprs_or_logs(
    sim: SimulatorHandle, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = connect(sim)
    assert tokens.refresh_token is not None
    assert tokens.id_token is not None
    # The browser leg (its redirect carries the code) is done; from here on only our code runs,
    # and every log line of every library at DEBUG is checked.
    code, verifier = authorize(sim, "main-client")
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    secrets = [
        MAIN_KEY,
        MAIN_SECRET,
        tokens.access_token,
        tokens.refresh_token,
        code,
        verifier,
        "u+wrongKey0000000001",
    ]
    errors: list[PagerDutyError] = []

    def capture(fn: Callable[[], object]) -> None:
        with pytest.raises(PagerDutyError) as info:
            fn()
        errors.append(info.value)

    oauth.exchange_code(sim.identity_url, "main-client", MAIN_SECRET, code, REDIRECT, verifier)
    capture(
        lambda: oauth.exchange_code(
            sim.identity_url, "main-client", MAIN_SECRET, code, REDIRECT, verifier
        )
    )
    oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    capture(
        lambda: oauth.refresh(sim.identity_url, "main-client", MAIN_SECRET, tokens.refresh_token)
    )
    capture(
        lambda: oauth.refresh(
            sim.identity_url, "main-client", MAIN_SECRET + "x", tokens.refresh_token
        )
    )
    capture(client_for(sim, http, "u+wrongKey0000000001").probe)
    sim.control.post("/tokens/expire", json={"token": tokens.access_token}).raise_for_status()
    capture(PagerDutyClient(sim.base_url, tokens.credential, http=http).probe)
    sim.control.post("/rate_limit", json={"per_minute": 1}).raise_for_status()
    limited = client_for(sim, http, MAIN_KEY, max_retries=1)
    limited.probe()
    capture(limited.probe)
    sim.control.post("/faults", json={"kind": "error", "status": 500}).raise_for_status()
    capture(client_for(sim, http, MAIN_KEY, max_retries=1).list_users)

    assert {type(e) for e in errors} >= {
        InvalidGrant,
        InvalidClient,
        InvalidCredentials,
        RateLimited,
        Transient,
    }
    texts = [t for e in errors for t in (str(e), repr(e), e.message, *e.details)]
    texts += [repr(tokens), repr(Credential("api_key", MAIN_KEY)), repr(limited)]
    texts += [record.getMessage() for record in caplog.records]
    names = {record.name for record in caplog.records}
    assert {"httpx", "workers.pagerduty.transport"} <= names
    for secret in secrets:
        for text in texts:
            assert secret not in text

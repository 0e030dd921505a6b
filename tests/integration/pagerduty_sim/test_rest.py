"""REST surface: wrapping, pagination, filters, errors, regions, rate-limit headers."""

from __future__ import annotations

import json

import httpx
import pytest

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import ALICE_KEY, DEMO_KEY, EU_KEY, NOAPI_KEY, api, load, user_scenario

DEMO_EMAILS = {
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
    "contractor@outside.example",
}


def test_users_are_wrapped_and_demo_people_exist(client: httpx.Client) -> None:
    resp = client.get("/users", params={"total": "true"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert {u["email"] for u in body["users"]} == DEMO_EMAILS
    assert body["total"] == 7
    assert body["more"] is False
    assert body["limit"] == 25
    one = client.get("/users/PUALICE").json()
    assert one["user"]["name"] == "Alice Admin"
    assert one["user"]["type"] == "user"
    assert one["user"]["self"].endswith("/users/PUALICE")


@pytest.mark.parametrize(
    ("n_users", "params", "expect_len", "expect_more", "expect_limit"),
    [
        (0, {}, 0, False, 25),
        (1, {}, 1, False, 25),
        (100, {}, 25, True, 25),  # default page size
        (100, {"limit": 100}, 100, False, 100),
        (101, {"limit": 100}, 100, True, 100),
        (101, {"limit": 100, "offset": 100}, 1, False, 100),
        (101, {"limit": 500}, 100, True, 100),  # clamped to the maximum, not an error
    ],
)
def test_pagination_edges(
    sim: SimulatorHandle,
    client: httpx.Client,
    n_users: int,
    params: dict[str, int],
    expect_len: int,
    expect_more: bool,
    expect_limit: int,
) -> None:
    load(sim, user_scenario(n_users))
    body = client.get("/users", params=params).json()
    assert len(body["users"]) == expect_len
    assert body["more"] is expect_more
    assert body["limit"] == expect_limit
    assert body["offset"] == params.get("offset", 0)
    assert body["total"] is None  # only with total=true


def test_walking_pages_by_received_count_sees_everyone_once(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    load(sim, user_scenario(101))
    seen: list[str] = []
    offset = 0
    while True:
        body = client.get("/users", params={"limit": 100, "offset": offset, "total": "true"}).json()
        assert body["total"] == 101
        seen += [u["id"] for u in body["users"]]
        offset += len(body["users"])
        if not body["more"]:
            break
    assert len(seen) == len(set(seen)) == 101


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"offset": 9900, "limit": 100}, 200, None),
        ({"offset": 9901, "limit": 100}, 400, 2002),
        ({"offset": 10000}, 400, 2002),
        ({"offset": 9990, "limit": 1000}, 400, 2002),  # clamped limit 100 still passes 10,000
        ({"limit": "abc"}, 400, 2001),
    ],
)
def test_offset_window_limit(
    client: httpx.Client, params: dict[str, object], status: int, code: int | None
) -> None:
    resp = client.get("/users", params=params)
    assert resp.status_code == status
    if status == 400:
        assert resp.json()["error"]["code"] == code


def test_offset_plus_limit_past_10000_is_pagerdutys_2002_body(client: httpx.Client) -> None:
    # cloudquery/cloudquery#12750, faros-ai/airbyte-connectors#991: the exact error
    for path in ("/users", "/schedules", "/oncalls"):
        resp = client.get(path, params={"offset": 9950, "limit": 100})
        assert resp.status_code == 400, path
        err = resp.json()["error"]
        assert err["code"] == 2002
        assert err["message"] == "Arguments Caused Error"
        assert len(err["errors"]) == 1
        assert err["errors"][0].startswith("Offset+limit exceeds maximum allowed value of 10000")


def test_total_only_with_lowercase_true(client: httpx.Client) -> None:
    assert client.get("/users", params={"total": "True"}).json()["total"] is None
    assert client.get("/users", params={"total": "true"}).json()["total"] == 7


def test_query_filters_by_name_or_email(client: httpx.Client) -> None:
    by_name = client.get("/users", params={"query": "caro"}).json()["users"]
    assert [u["id"] for u in by_name] == ["PUCAROL"]
    by_email = client.get("/users", params={"query": "OUTSIDE.example"}).json()["users"]
    assert [u["id"] for u in by_email] == ["PUCONTR"]
    scheds = client.get("/schedules", params={"query": "secondary"}).json()["schedules"]
    assert [s["id"] for s in scheds] == ["PSSECON"]


def test_team_ids_filter(client: httpx.Client) -> None:
    users = client.get("/users", params={"team_ids[]": "PTENG01"}).json()["users"]
    assert {u["id"] for u in users} == {"PUALICE", "PUBOB01"}
    scheds = client.get("/schedules", params={"team_ids[]": ["PTENG01", "PTNONE"]}).json()
    assert [s["id"] for s in scheds["schedules"]] == ["PSPRIMA"]


def test_abilities(client: httpx.Client) -> None:
    assert client.get("/abilities").json() == {
        "abilities": ["teams", "read_only_users", "service_support_hours", "urgencies"]
    }


def test_401_body_is_not_json_by_default(sim: SimulatorHandle) -> None:
    # go-pagerduty#553 / #469: a 401 often has no JSON body at all
    assert sim.control.get("/settings").json()["auth_error_mode"] == "text"
    for key in ("u+nope", None):
        with api(sim, key=key) as c:
            resp = c.get("/users")
        assert resp.status_code == 401
        assert not resp.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            resp.json()


def test_json_401_bodies_are_selectable(sim: SimulatorHandle) -> None:
    sim.control.post("/settings", json={"auth_error_mode": "json"}).raise_for_status()
    with api(sim, key="u+nope") as c:
        resp = c.get("/users")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 2006
    with api(sim, key=None) as c:
        assert c.get("/users").status_code == 401
    sim.control.post("/reset").raise_for_status()
    assert sim.control.get("/settings").json()["auth_error_mode"] == "text"


def test_no_api_access_is_402(sim: SimulatorHandle) -> None:
    with api(sim, key=NOAPI_KEY) as c:
        resp = c.get("/users", params={"limit": 1})
    assert resp.status_code == 402
    assert resp.json()["error"]["message"]


def test_unknown_ids_are_404_code_2100(client: httpx.Client) -> None:
    for path in (
        "/users/PNOPE00",
        "/schedules/PNOPE00",
        "/v3/schedules/PNOPE00",
        "/schedules/PNOPE00/users",
        "/no/such/route",
    ):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["code"] == 2100


def test_users_me_with_account_key_is_400_plain_string(client: httpx.Client) -> None:
    resp = client.get("/users/me")
    assert resp.status_code == 400
    assert isinstance(resp.json()["error"], str)


def test_users_me_with_user_key(sim: SimulatorHandle) -> None:
    with api(sim, key=ALICE_KEY) as c:
        resp = c.get("/users/me")
    assert resp.status_code == 200
    assert resp.json()["user"]["email"] == "alice@example.com"


def test_eu_key_only_works_under_eu(sim: SimulatorHandle) -> None:
    with api(sim, key=EU_KEY, eu=True) as c:
        resp = c.get("/users")
        assert resp.status_code == 200
        assert {u["email"] for u in resp.json()["users"]} == {
            "anna@euco.example",
            "ben@euco.example",
        }
        # self links name the EU API base the client used
        assert resp.json()["users"][0]["self"].startswith(f"{sim.eu_base_url}/users/")
    with api(sim, key=EU_KEY) as c:
        assert c.get("/users").status_code == 401
    with api(sim, key=DEMO_KEY, eu=True) as c:
        assert c.get("/users").status_code == 401


def test_rate_limit_headers_on_normal_responses(client: httpx.Client) -> None:
    first = client.get("/users")
    second = client.get("/abilities")
    assert first.headers["ratelimit-limit"] == "960"
    assert int(first.headers["ratelimit-remaining"]) == 959
    assert int(second.headers["ratelimit-remaining"]) == 958
    assert 0 < int(first.headers["ratelimit-reset"]) <= 60

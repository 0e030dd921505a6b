"""Control API: faults, rate limits, counters, mutations, scenarios, generator, process mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from models.clock import utcnow
from pagerduty_sim.generator import fleet, fleet_key, large_account
from pagerduty_sim.scenario import ScenarioError, load_scenario
from pagerduty_sim.server import SimulatorHandle, start_simulator
from tests.support.simulator import DEMO_KEY, api, load, user_scenario

pytestmark = pytest.mark.clock  # the clock lane runs it at other hours too


def test_credentials_lists_labels_keys_and_apps(sim: SimulatorHandle) -> None:
    creds = sim.control.get("/credentials").json()
    keys = {k["label"]: k for k in creds["api_keys"]}
    assert keys["demo-readonly"]["key"] == DEMO_KEY
    assert keys["euco-readonly"]["rest_base_url"] == sim.eu_base_url
    apps = {a["label"]: a for a in creds["oauth_apps"]}
    assert apps["demo-oauth"]["client_id"] == "demo-client-id"
    assert apps["demo-oauth"]["client_secret"] == "demo-client-secret"
    assert apps["demo-oauth"]["authorize_as"] == "PUALICE"
    assert creds["urls"]["identity"] == sim.identity_url


def test_error_fault_scoped_to_path_query_and_count(sim: SimulatorHandle) -> None:
    load(sim, user_scenario(300))
    rule = sim.control.post(
        "/faults",
        json={"kind": "error", "path_prefix": "/users", "query": {"offset": "200"}, "times": 1},
    ).json()
    with api(sim) as c:
        assert c.get("/users", params={"limit": 100, "offset": 100}).status_code == 200
        page3 = c.get("/users", params={"limit": 100, "offset": 200})
        assert page3.status_code == 500
        assert c.get("/users", params={"limit": 100, "offset": 200}).status_code == 200
    faults = sim.control.get("/faults").json()["faults"]
    assert faults[0]["id"] == rule["id"]
    assert faults[0]["hits"] == 1


def test_latency_fault(sim: SimulatorHandle) -> None:
    sim.control.post(
        "/faults", json={"kind": "latency", "latency_ms": 300, "path_prefix": "/abilities"}
    ).raise_for_status()
    with api(sim) as c:
        t0 = time.monotonic()
        c.get("/abilities")
        slow = time.monotonic() - t0
        t0 = time.monotonic()
        c.get("/users")
        fast = time.monotonic() - t0
    assert slow >= 0.3
    assert fast < 0.3


def test_timeout_fault_hangs(sim: SimulatorHandle) -> None:
    sim.control.post(
        "/faults", json={"kind": "timeout", "seconds": 2, "times": 1}
    ).raise_for_status()
    with api(sim) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/users", timeout=0.3)


def test_truncated_and_non_json_bodies(sim: SimulatorHandle) -> None:
    sim.control.post(
        "/faults", json={"kind": "truncated", "path_prefix": "/users", "times": 1}
    ).raise_for_status()
    sim.control.post(
        "/faults", json={"kind": "non_json", "path_prefix": "/schedules", "times": 1}
    ).raise_for_status()
    with api(sim) as c:
        trunc = c.get("/users")
        assert trunc.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            trunc.json()
        html = c.get("/schedules")
        with pytest.raises(json.JSONDecodeError):
            html.json()
        assert c.get("/users").json()["users"]  # each rule fired once only


def test_probabilistic_errors(sim: SimulatorHandle) -> None:
    sim.control.post("/faults", json={"kind": "error", "probability": 0.5}).raise_for_status()
    with api(sim) as c:
        codes = [c.get("/abilities").status_code for _ in range(80)]
    assert 10 < codes.count(500) < 70
    assert set(codes) == {200, 500}
    sim.control.delete("/faults").raise_for_status()
    with api(sim) as c:
        assert c.get("/abilities").status_code == 200


def test_rate_limit_429_with_headers_then_reset_by_clock(sim: SimulatorHandle) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 3}).raise_for_status()
    with api(sim) as c:
        codes = [c.get("/abilities").status_code for _ in range(3)]
        limited = c.get("/abilities")
    assert codes == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == 2020
    assert limited.headers["ratelimit-limit"] == "3"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert 0 < int(limited.headers["ratelimit-reset"]) <= 60
    # another credential has its own budget
    with api(sim, key="u+demoAliceUserKey00001") as c:
        assert c.get("/abilities").status_code == 200
    sim.control.post("/clock", json={"advance_seconds": 61}).raise_for_status()
    with api(sim) as c:
        assert c.get("/abilities").status_code == 200


def test_bare_429_has_no_headers_or_body(sim: SimulatorHandle) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 1, "bare_429": True}).raise_for_status()
    with api(sim) as c:
        c.get("/abilities")
        resp = c.get("/abilities")
    assert resp.status_code == 429
    assert resp.content == b""
    assert not any(h.startswith("ratelimit-") for h in resp.headers)


def test_rate_limit_can_be_switched_off(sim: SimulatorHandle) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 1, "enabled": False}).raise_for_status()
    with api(sim) as c:
        assert [c.get("/abilities").status_code for _ in range(3)] == [200, 200, 200]


def test_request_counters_by_endpoint_and_credential(sim: SimulatorHandle) -> None:
    sim.control.post("/stats/reset").raise_for_status()
    with api(sim) as c:
        c.get("/users")
        c.get("/users/PUBOB01")
        c.get("/users/PUCAROL")
    with api(sim, key="bogus") as c:
        c.get("/users")
    stats = sim.control.get("/stats").json()
    assert stats["by_endpoint"] == {"GET /users": 2, "GET /users/{id}": 2}
    assert stats["by_credential"] == {"demo-readonly": 3, "(invalid)": 1}
    assert DEMO_KEY not in str(stats)
    recent = sim.control.get("/requests").json()["requests"]
    assert recent[0]["accept"] == "application/vnd.pagerduty+json;version=2"
    sim.control.post("/stats/reset").raise_for_status()
    assert sim.control.get("/stats").json()["total"] == 0


def test_user_mutations(sim: SimulatorHandle, client: httpx.Client) -> None:
    added = sim.control.post(
        "/accounts/acme/users", json={"name": "Gina", "email": "gina@example.com"}
    ).json()
    assert client.get(f"/users/{added['id']}").json()["user"]["email"] == "gina@example.com"
    sim.control.patch(
        "/accounts/acme/users/PUBOB01", json={"email": "Robert@Example.com"}
    ).raise_for_status()
    assert client.get("/users/PUBOB01").json()["user"]["email"] == "Robert@Example.com"
    sim.control.delete("/accounts/acme/users/PUCAROL").raise_for_status()
    assert client.get("/users/PUCAROL").status_code == 404
    # a deleted user stays on the schedule as a placeholder (see test_deleted_users.py)
    prim = client.get("/schedules/PSPRIMA").json()["schedule"]
    assert [u["id"] for u in prim["users"]] == ["PUALICE", "PUBOB01", "PUCAROL"]
    assert "deleted_at" in prim["users"][2]
    assert sim.control.delete("/accounts/acme/users/PUCAROL").status_code == 404


def test_put_user_on_call_now(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.control.post(
        "/accounts/acme/schedules/PSSECON/overrides",
        json={"user_id": "PUFRANK", "duration_seconds": 600},
    ).raise_for_status()
    now = utcnow()
    resp = client.get(
        "/schedules/PSSECON",
        params={"since": now.isoformat(), "until": (now + timedelta(seconds=1)).isoformat()},
    )
    entries = resp.json()["schedule"]["final_schedule"]["rendered_schedule_entries"]
    assert [e["user"]["id"] for e in entries] == ["PUFRANK"]
    oncall = client.get("/oncalls", params={"schedule_ids[]": "PSSECON"}).json()["oncalls"]
    assert [o["user"]["id"] for o in oncall] == ["PUFRANK"]
    assert sim.control.get("/accounts/acme/schedules/PSSECON/oncall").json() == {
        "user_ids": ["PUFRANK"]
    }


def test_account_plan_toggle(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.control.patch("/accounts/acme", json={"api_access": False}).raise_for_status()
    assert client.get("/users").status_code == 402


def test_revoked_api_key(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.control.post("/api_keys/demo-readonly/revoke").raise_for_status()
    assert client.get("/users").status_code == 401


def test_scenario_loader_errors_are_clear(sim: SimulatorHandle) -> None:
    bad = {
        "accounts": [
            {
                "id": "x",
                "users": [],
                "schedules": [
                    {
                        "id": "S1",
                        "name": "s",
                        "layers": [
                            {
                                "start": "2024-01-01T00:00:00Z",
                                "rotation_turn_length_seconds": 60,
                                "users": ["PGHOST"],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    resp = sim.control.put("/scenario", json={"scenario": bad})
    assert resp.status_code == 400
    assert (
        "accounts[0].schedules[0].layers[0].users[0]: unknown user 'PGHOST'" in resp.json()["error"]
    )
    with pytest.raises(ScenarioError, match="region"):
        load_scenario({"accounts": [{"id": "x", "region": "apac"}]})
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario("no-such-scenario")


def test_generated_fleet_served_over_http() -> None:
    with (
        start_simulator(fleet(50, seed=3)) as s,
        httpx.Client(
            base_url=s.base_url, headers={"Authorization": f"Token token={fleet_key(42)}"}
        ) as c,
    ):
        body = c.get("/users", params={"total": "true"}).json()
        assert body["total"] == 50
        assert body["users"][0]["email"].endswith("@fleet42.example")
        assert c.get("/oncalls").status_code == 200


def test_large_account_paginates_to_the_10000_cap() -> None:
    t0 = time.monotonic()
    sc = large_account(n_users=25_000, n_schedules=50)
    assert time.monotonic() - t0 < 2
    with (
        start_simulator(sc) as s,
        httpx.Client(
            base_url=s.base_url, headers={"Authorization": "Token token=u+largeReadOnlyKey000001"}
        ) as c,
    ):
        last = c.get("/users", params={"limit": 100, "offset": 9900, "total": "true"}).json()
        assert last["total"] == 25_000
        assert last["more"] is True
        assert len(last["users"]) == 100
        capped = c.get("/users", params={"limit": 100, "offset": 10_000})
        assert capped.status_code == 400
        assert capped.json()["error"]["code"] == 2002
        # past the cap, narrower queries still reach everyone
        found = c.get("/users", params={"query": "user24999@"}).json()["users"]
        assert [u["email"] for u in found] == ["user24999@large.example"]


def test_large_account_with_deleted_users() -> None:
    sc = large_account(n_users=300, n_schedules=40, seed=2, deleted_users=50)
    acct = sc.accounts["large"]
    assert len(acct.users) == 250
    assert len(acct.deleted_users) == 50
    with (
        start_simulator(sc) as s,
        httpx.Client(
            base_url=s.base_url, headers={"Authorization": "Token token=u+largeReadOnlyKey000001"}
        ) as c,
    ):
        assert c.get("/users", params={"total": "true"}).json()["total"] == 250
        placeholders = [
            u
            for sid in list(acct.schedules)[:40]
            for u in c.get(f"/schedules/{sid}").json().get("schedule", {}).get("users", [])
            if "deleted_at" in u
        ]
        assert placeholders
        assert all(u["id"] in acct.deleted_users for u in placeholders)


def test_subprocess_mode_and_cli(tmp_path: Path) -> None:
    with start_simulator("demo", in_thread=False, auto_approve=True) as s:
        assert s.state is None
        assert s.control.get("/settings").json()["auto_approve"] is True
        with httpx.Client(
            base_url=s.base_url, headers={"Authorization": f"Token token={DEMO_KEY}"}
        ) as c:
            assert c.get("/users", params={"limit": 1}).status_code == 200
    out = subprocess.run(
        [sys.executable, "-m", "pagerduty_sim", "--scenario", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert "bad scenario" in out.stderr

"""/oncalls as PagerDuty sends it: explicit nulls for permanent on-calls, include[]=users embeds
full users, and an extra operation-specific rate limit (facts)."""

from __future__ import annotations

import subprocess
import sys

import httpx

from pagerduty_sim.server import SimulatorHandle, start_simulator
from pagerduty_sim.state import DEFAULT_ONCALLS_RATE_LIMIT
from tests.support.simulator import ALICE_KEY, DEMO_KEY, api

AT = {"since": "2024-01-01T13:00:00Z", "until": "2024-01-01T13:00:00Z"}


def test_permanent_oncalls_have_null_schedule_start_end(client: httpx.Client) -> None:
    rows = client.get("/oncalls", params={**AT, "escalation_policy_ids[]": "PEPENG1"}).json()
    permanent = [o for o in rows["oncalls"] if o["escalation_level"] == 3]
    assert len(permanent) == 1
    # present as JSON null, not missing keys
    assert {k: permanent[0][k] for k in ("schedule", "start", "end")} == {
        "schedule": None,
        "start": None,
        "end": None,
    }
    scheduled = [o for o in rows["oncalls"] if o["escalation_level"] == 1]
    assert scheduled[0]["schedule"]["id"] == "PSPRIMA"
    assert scheduled[0]["start"]


def test_include_users_embeds_full_user_objects(client: httpx.Client) -> None:
    plain = client.get("/oncalls", params=AT).json()["oncalls"]
    assert all(o["user"]["type"] == "user_reference" for o in plain)
    assert all("email" not in o["user"] for o in plain)
    full = client.get("/oncalls", params={**AT, "include[]": "users"}).json()["oncalls"]
    assert full
    assert all(o["user"]["type"] == "user" for o in full)
    emails = {o["user"]["id"]: o["user"]["email"] for o in full}
    assert emails["PUALICE"] == "alice@example.com"
    assert emails["PUCONTR"] == "contractor@outside.example"


def test_oncalls_have_their_own_rate_limit(sim: SimulatorHandle) -> None:
    assert sim.control.get("/rate_limit").json()["oncalls_per_minute"] == (
        DEFAULT_ONCALLS_RATE_LIMIT
    )
    sim.control.post("/rate_limit", json={"oncalls_per_minute": 2}).raise_for_status()
    with api(sim) as c:
        first, second = c.get("/oncalls"), c.get("/oncalls")
        assert (first.status_code, second.status_code) == (200, 200)
        # the headers describe the limit closest to being reached (developer docs, Rate limits)
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == (
            "2",
            "1",
        )
        assert second.headers["ratelimit-remaining"] == "0"
        limited = c.get("/oncalls")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == 2020
        assert limited.headers["ratelimit-limit"] == "2"
        assert limited.headers["ratelimit-remaining"] == "0"
        assert 0 < int(limited.headers["ratelimit-reset"]) <= 60
        # other endpoints still have the per-credential budget (and used it for /oncalls too)
        users = c.get("/users")
        assert users.status_code == 200
        assert int(users.headers["ratelimit-remaining"]) == 960 - 4
    with api(sim, key=ALICE_KEY) as c:  # another credential: its own /oncalls budget
        assert c.get("/oncalls").status_code == 200
    sim.control.post("/clock", json={"advance_seconds": 61}).raise_for_status()
    with api(sim) as c:
        assert c.get("/oncalls").status_code == 200


def test_main_limit_also_applies_to_oncalls(sim: SimulatorHandle) -> None:
    sim.control.post("/rate_limit", json={"per_minute": 1}).raise_for_status()
    with api(sim) as c:
        assert c.get("/users").status_code == 200
        resp = c.get("/oncalls")
        assert resp.status_code == 429
        assert resp.headers["ratelimit-limit"] == "1"


def test_oncalls_limit_from_start_simulator_and_cli() -> None:
    with start_simulator("demo", oncalls_rate_limit_per_minute=1) as s:
        assert s.control.get("/rate_limit").json()["oncalls_per_minute"] == 1
        headers = {"Authorization": f"Token token={DEMO_KEY}"}
        assert httpx.get(s.base_url + "/oncalls", headers=headers).status_code == 200
        assert httpx.get(s.base_url + "/oncalls", headers=headers).status_code == 429
    out = subprocess.run(
        [sys.executable, "-m", "pagerduty_sim", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--oncalls-rate-limit" in out.stdout

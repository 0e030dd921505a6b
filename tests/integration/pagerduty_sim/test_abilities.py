"""402 per ability: an endpoint or a parameter can need an account ability (facts: "402 ... per
endpoint or feature (e.g. team_ids[] needs the teams ability), not only 'no API access'")."""

from __future__ import annotations

from typing import Any

import httpx

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import DEMO_KEY, NOAPI_KEY, api, load

DOC_SENTENCE = "does not have access to one or more abilities needed to complete this request"


def _abilities(sim: SimulatorHandle, **body: Any) -> dict[str, Any]:
    resp = sim.control.patch("/accounts/acme", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_team_ids_filter_needs_the_teams_ability(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    assert _abilities(sim)["required_abilities"] == {"team_ids[]": ["teams"]}  # the default
    _abilities(sim, abilities=["read_only_users"])
    for path in ("/users", "/schedules", "/v3/schedules"):
        resp = client.get(path, params={"team_ids[]": "PTENG01"})
        assert resp.status_code == 402, path
        err = resp.json()["error"]
        # the body PagerDuty sends (tidbyt/community#810)
        assert err["message"] == "Required abilities are unavailable"
        assert err["code"] == 2014
        assert err["errors"] == ["The teams account ability is required to filter by teams."]
        assert err["missing_abilities"] == "teams"
        # the same endpoint without the gated parameter still works
        assert client.get(path).status_code == 200
    assert client.get("/users", params={"team_ids[]": ""}).status_code == 200


def test_v3_schedules_can_be_gated_behind_an_ability(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    _abilities(sim, required_abilities={"/v3/schedules": "v3_schedules"})
    for path in ("/v3/schedules", "/v3/schedules/PSFTSUN"):
        resp = client.get(path)
        assert resp.status_code == 402, path
        err = resp.json()["error"]
        assert err["code"] == 2014
        assert DOC_SENTENCE in err["errors"][0]
        assert err["missing_abilities"] == "v3_schedules"
    # v2 schedules and the credential probe are not affected
    assert client.get("/schedules").status_code == 200
    assert client.get("/users", params={"limit": 1}).status_code == 200
    _abilities(sim, abilities=["teams", "v3_schedules"])
    assert client.get("/v3/schedules").status_code == 200
    # null / [] removes a gate
    gates = _abilities(sim, abilities=[], required_abilities={"/v3/schedules": None})
    assert gates["required_abilities"] == {"team_ids[]": ["teams"]}
    assert client.get("/v3/schedules").status_code == 200


def test_a_gate_covers_the_routes_under_it_only(sim: SimulatorHandle, client: httpx.Client) -> None:
    _abilities(sim, required_abilities={"/schedules/{id}": ["premium"]})
    assert client.get("/schedules/PSPRIMA").status_code == 402
    assert client.get("/schedules/PSPRIMA/users").status_code == 402
    assert client.get("/schedules").status_code == 200
    assert client.get("/v3/schedules/PSFTSUN").status_code == 200


def test_scenario_declares_gates(sim: SimulatorHandle) -> None:
    load(
        sim,
        {
            "accounts": [
                {
                    "id": "gated",
                    "abilities": ["teams"],
                    "required_abilities": {"/oncalls": "oncalls_ability", "query": ["search"]},
                    "users": [{"id": "PU1", "name": "One", "email": "one@g.example"}],
                }
            ],
            "api_keys": [{"label": "g", "key": DEMO_KEY, "account": "gated"}],
        },
    )
    with api(sim) as c:
        assert c.get("/oncalls").status_code == 402
        assert c.get("/users", params={"query": "one"}).status_code == 402
        assert c.get("/users").status_code == 200
        assert c.get("/users", params={"team_ids[]": "PT1"}).status_code == 200


def test_no_api_access_still_402_on_everything(sim: SimulatorHandle) -> None:
    with api(sim, key=NOAPI_KEY) as c:
        for path in ("/users", "/abilities", "/schedules", "/oncalls", "/v3/schedules"):
            resp = c.get(path)
            assert resp.status_code == 402, path
            assert resp.json()["error"]["code"] == 2012

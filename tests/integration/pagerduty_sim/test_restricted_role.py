"""PagerDuty's Restricted Access role: a valid credential whose lists are filtered to what the
user may see (their teams' and their own schedules and users), possibly empty, never a 403
for the whole list. Detail routes for things outside their reach answer 403 code 2010."""

from __future__ import annotations

from typing import Any

import httpx

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import TokenFactory, api, load

LAYER = {"start": "2024-01-01T00:00:00Z", "rotation_turn_length_seconds": 86400}
AT = {"since": "2024-01-01T12:00:00Z", "until": "2024-01-01T12:00:00Z"}


def scenario() -> dict[str, Any]:
    def user(uid: str, role: str = "user", teams: list[str] | None = None) -> dict[str, Any]:
        return {
            "id": uid,
            "name": uid,
            "email": f"{uid.lower()}@r.example",
            "role": role,
            "teams": teams or [],
        }

    return {
        "accounts": [
            {
                "id": "r",
                "teams": [{"id": "PT1", "name": "One"}, {"id": "PT2", "name": "Two"}],
                "users": [
                    user("PUADMIN", "admin", ["PT1"]),
                    user("PUBOB", "user", ["PT1"]),
                    user("PURES", "restricted_access", ["PT1"]),
                    user("PUCAROL", "user", ["PT2"]),
                    user("PULONE", "restricted_access"),
                ],
                "schedules": [
                    {
                        "id": "PST1",
                        "name": "Team one",
                        "teams": ["PT1"],
                        "layers": [{**LAYER, "users": ["PUADMIN", "PUBOB"]}],
                    },
                    {
                        "id": "PSMINE",
                        "name": "Mine",
                        "layers": [{**LAYER, "users": ["PURES", "PUCAROL"]}],
                    },
                    {
                        "id": "PST2",
                        "name": "Team two",
                        "teams": ["PT2"],
                        "layers": [{**LAYER, "users": ["PUCAROL"]}],
                    },
                    {
                        "id": "PSSECRT",
                        "name": "Secret",
                        "restricted": True,
                        "layers": [{**LAYER, "users": ["PURES"]}],
                    },
                ],
                "escalation_policies": [
                    {
                        "id": "PEP",
                        "name": "P",
                        "rules": [
                            {"targets": [{"type": "schedule", "id": "PST1"}]},
                            {"targets": [{"type": "schedule", "id": "PSMINE"}]},
                            {"targets": [{"type": "schedule", "id": "PST2"}]},
                            {"targets": [{"type": "user", "id": "PUCAROL"}]},
                            {"targets": [{"type": "user", "id": "PURES"}]},
                        ],
                    }
                ],
            }
        ],
        "api_keys": [
            {"label": "res", "key": "u+resKey", "account": "r", "kind": "user", "user_id": "PURES"},
            {
                "label": "lone",
                "key": "u+loneKey",
                "account": "r",
                "kind": "user",
                "user_id": "PULONE",
            },
            {"label": "acct", "key": "u+acctKey", "account": "r"},
        ],
        "oauth_apps": [
            {
                "label": "res-app",
                "client_id": "res-app",
                "client_secret": "s",
                "account": "r",
                "scopes": "openid users.read schedules.read oncalls.read",
                "authorize_as": "PURES",
            }
        ],
    }


def ids(resp: httpx.Response, key: str) -> list[str]:
    assert resp.status_code == 200, resp.text
    return sorted(x["id"] for x in resp.json()[key])


def test_restricted_user_gets_filtered_lists_not_403(sim: SimulatorHandle) -> None:
    load(sim, scenario())
    with api(sim, key="u+resKey") as c:
        assert ids(c.get("/users", params={"limit": 1}), "users") == ["PUADMIN"]
        assert ids(c.get("/users"), "users") == ["PUADMIN", "PUBOB", "PURES"]  # self + teammates
        assert ids(c.get("/schedules"), "schedules") == ["PSMINE", "PST1"]  # team + member
        rows = c.get("/oncalls", params=AT).json()["oncalls"]
        assert sorted({(o["schedule"] or {}).get("id", o["user"]["id"]) for o in rows}) == [
            "PSMINE",
            "PST1",
            "PURES",
        ]
        assert c.get("/users/me").json()["user"]["id"] == "PURES"
        assert c.get("/schedules/PSMINE").status_code == 200
        # things outside their reach: 403 on the detail routes
        for path in ("/users/PUCAROL", "/schedules/PST2", "/schedules/PST2/users"):
            resp = c.get(path)
            assert resp.status_code == 403, path
            assert resp.json()["error"]["code"] == 2010
        assert c.get("/schedules/PSSECRT").status_code == 403  # restricted schedule: admins only
    with api(sim, key="u+acctKey") as c:  # the account key still sees everything
        assert len(ids(c.get("/users"), "users")) == 5
        assert len(ids(c.get("/schedules"), "schedules")) == 4


def test_restricted_user_with_nothing_sees_empty_lists(sim: SimulatorHandle) -> None:
    load(sim, scenario())
    with api(sim, key="u+loneKey") as c:
        assert ids(c.get("/users"), "users") == ["PULONE"]
        assert ids(c.get("/schedules"), "schedules") == []
        assert c.get("/oncalls", params=AT).json()["oncalls"] == []
        assert c.get("/v3/schedules").json()["schedules"] == []


def test_restricted_users_oauth_token_is_filtered_too(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    load(sim, scenario())
    tok = oauth_tokens(
        client_id="res-app",
        client_secret="s",
        scope="openid users.read schedules.read oncalls.read",
    )
    with api(sim, bearer=tok["access_token"]) as c:
        assert ids(c.get("/schedules"), "schedules") == ["PSMINE", "PST1"]
        assert c.get("/users", params={"limit": 1}).status_code == 200

"""PagerDuty's Restricted Access role: a valid credential that may not read users/schedules."""

from __future__ import annotations

import httpx

from pagerduty_sim.server import start_simulator

ACCEPT = {"Accept": "application/vnd.pagerduty+json;version=2"}


def test_restricted_users_key_gets_403_2010_but_is_authenticated() -> None:
    with start_simulator("demo") as sim:
        uid = sim.control.post(
            "/accounts/acme/users",
            json={"name": "R", "email": "r@example.com", "role": "restricted_access"},
        ).json()["id"]
        sim.control.post(
            "/api_keys",
            json={
                "label": "r",
                "key": "u+restrictedKey000001",
                "account": "acme",
                "kind": "user",
                "user_id": uid,
            },
        )
        headers = {**ACCEPT, "Authorization": "Token token=u+restrictedKey000001"}
        for path in ("/users", "/schedules", "/oncalls"):
            r = httpx.get(sim.base_url + path, headers=headers)
            assert r.status_code == 403, path
            assert r.json()["error"]["code"] == 2010
        # The key itself is valid: /users/me (no scope needed) answers.
        assert httpx.get(sim.base_url + "/users/me", headers=headers).status_code == 200

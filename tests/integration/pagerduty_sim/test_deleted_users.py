"""Deleted users and schedule edits (facts: "Deleted users stay on schedules and escalation
policies as inactive placeholders"; go-pagerduty#509, #425; qontract-reconcile#2074).

- deleting a user removes them from GET /users and GET /users/{id} (404), but schedules,
  rendered entries and /oncalls keep naming them, as a reference with `deleted_at`;
- their user-level API key and OAuth tokens answer 401;
- taking a user off a schedule "effective now" changes only the future.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import BOB_KEY, TokenFactory, api, load

pytestmark = pytest.mark.clock  # the clock lane runs it at other hours too

WEEK3 = {"since": "2024-01-15T00:00:00Z", "until": "2024-01-22T00:00:00Z", "time_zone": "UTC"}


def _delete(sim: SimulatorHandle, uid: str) -> dict[str, Any]:
    resp = sim.control.delete(f"/accounts/acme/users/{uid}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_deleted_user_leaves_the_user_list(sim: SimulatorHandle, client: httpx.Client) -> None:
    out = _delete(sim, "PUCAROL")
    assert out["deleted"] == "PUCAROL"
    assert out["deleted_at"]
    body = client.get("/users", params={"total": "true"}).json()
    assert body["total"] == 6
    assert "PUCAROL" not in {u["id"] for u in body["users"]}
    resp = client.get("/users/PUCAROL")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == 2100


def test_deleted_user_stays_on_schedules_as_inactive_placeholder(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    deleted_at = _delete(sim, "PUCAROL")["deleted_at"]
    sched = client.get("/schedules/PSPRIMA", params=WEEK3).json()["schedule"]
    carol = next(u for u in sched["users"] if u["id"] == "PUCAROL")
    assert carol["type"] == "user_reference"
    assert carol["deleted_at"] == deleted_at
    assert carol["summary"] == "Carol - inactive"
    others = [u for u in sched["users"] if u["id"] != "PUCAROL"]
    assert all("deleted_at" not in u for u in others)
    # week 3 of the weekly rotation is Carol's: the entry still names her
    (entry,) = sched["final_schedule"]["rendered_schedule_entries"]
    assert entry["user"]["id"] == "PUCAROL"
    assert entry["user"]["deleted_at"] == deleted_at
    layer_users = [u["user"]["id"] for u in sched["schedule_layers"][0]["users"]]
    assert layer_users == ["PUALICE", "PUBOB01", "PUCAROL"]
    listed = {s["id"]: s for s in client.get("/schedules").json()["schedules"]}
    assert "PUCAROL" in {u["id"] for u in listed["PSPRIMA"]["users"]}


def test_deleted_user_is_not_a_schedule_user_object(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    _delete(sim, "PUCAROL")
    # GET /schedules/{id}/users returns full user objects, which a deleted user no longer has
    users = client.get("/schedules/PSPRIMA/users").json()["users"]
    assert [u["id"] for u in users] == ["PUALICE", "PUBOB01"]


def test_oncalls_still_name_deleted_users(sim: SimulatorHandle, client: httpx.Client) -> None:
    _delete(sim, "PUCAROL")
    _delete(sim, "PUALICE")  # also a direct user target (level 3 of Engineering)
    params = {
        "since": "2024-01-16T13:00:00Z",
        "until": "2024-01-16T13:00:00Z",
        "escalation_policy_ids[]": "PEPENG1",
    }
    for include in (None, "users"):
        q = {**params, **({"include[]": include} if include else {})}
        rows = client.get("/oncalls", params=q).json()["oncalls"]
        by_level = {o["escalation_level"]: o["user"] for o in rows}
        assert by_level[1]["id"] == "PUCAROL"
        assert "deleted_at" in by_level[1]
        assert by_level[3]["id"] == "PUALICE"
        assert "deleted_at" in by_level[3]
        assert by_level[3]["type"] == "user_reference"  # no full object for a deleted user
        assert "deleted_at" not in by_level[2]


def test_deleted_users_credentials_answer_401(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    tok = oauth_tokens(client_id="demo-bob-client-id", client_secret="demo-bob-client-secret")
    with api(sim, key=BOB_KEY) as c:
        assert c.get("/users/me").status_code == 200
    _delete(sim, "PUBOB01")
    with api(sim, key=BOB_KEY) as c:
        assert c.get("/users/me").status_code == 401
        assert c.get("/users", params={"limit": 1}).status_code == 401
    with api(sim, bearer=tok["access_token"]) as c:
        assert c.get("/users/me").status_code == 401
    resp = httpx.post(
        f"{sim.identity_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tok["refresh_token"],
            "client_id": "demo-bob-client-id",
            "client_secret": "demo-bob-client-secret",
        },
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_scenario_can_start_with_deleted_users(sim: SimulatorHandle, client: httpx.Client) -> None:
    load(
        sim,
        {
            "accounts": [
                {
                    "id": "d",
                    "users": [
                        {"id": "PUA", "name": "A", "email": "a@d.example"},
                        {
                            "id": "PUGONE",
                            "name": "Gone",
                            "email": "gone@d.example",
                            "deleted_at": "2024-06-01T00:00:00Z",
                        },
                    ],
                    "schedules": [
                        {
                            "id": "PSD",
                            "name": "D",
                            "layers": [
                                {
                                    "start": "2024-01-01T00:00:00Z",
                                    "rotation_turn_length_seconds": 86400,
                                    "users": ["PUA", "PUGONE"],
                                }
                            ],
                        }
                    ],
                }
            ],
            "api_keys": [
                {"label": "d", "key": "u+demoReadOnlyKey000001", "account": "d"},
                {
                    "label": "gone",
                    "key": "u+goneKey",
                    "account": "d",
                    "kind": "user",
                    "user_id": "PUGONE",
                },
            ],
        },
    )
    assert [u["id"] for u in client.get("/users").json()["users"]] == ["PUA"]
    users = client.get("/schedules/PSD").json()["schedule"]["users"]
    assert users[1] == {
        "id": "PUGONE",
        "type": "user_reference",
        "summary": "Gone - inactive",
        "self": users[1]["self"],
        "html_url": users[1]["html_url"],
        "deleted_at": "2024-06-01T00:00:00Z",
    }
    with api(sim, key="u+goneKey") as c:
        assert c.get("/users/me").status_code == 401


# --------------------------------------------------------------------------- effective-now edits


def _now(sim: SimulatorHandle) -> datetime:
    return datetime.fromisoformat(sim.control.get("/clock").json()["now"].replace("Z", "+00:00"))


def _final(client: httpx.Client, sid: str, since: datetime, until: datetime) -> list[tuple]:
    body = client.get(
        f"/schedules/{sid}",
        params={"since": since.isoformat(), "until": until.isoformat(), "time_zone": "UTC"},
    ).json()["schedule"]
    return [
        (e["start"], e["end"], e["user"]["id"])
        for e in body["final_schedule"]["rendered_schedule_entries"]
    ]


def test_removing_a_user_from_a_schedule_changes_only_the_future(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    sim.control.delete("/accounts/acme/schedules/PSPRIMA/overrides/POPRIM1").raise_for_status()
    sim.control.post("/clock", json={"advance_seconds": 3600}).raise_for_status()
    now = _now(sim).replace(microsecond=0)
    # Rendered up to a day past now: the edit's instant (a moment after `now`, possibly in the
    # next second) falls inside, so the expectation below does not depend on when it lands.
    past = _final(client, "PSPRIMA", now - timedelta(days=21), now + timedelta(days=1))
    future = _final(client, "PSPRIMA", now, now + timedelta(days=21))
    assert "PUBOB01" in {p[2] for p in past}
    assert "PUBOB01" in {f[2] for f in future}
    resp = sim.control.delete("/accounts/acme/schedules/PSPRIMA/users/PUBOB01")
    assert resp.status_code == 200, resp.text
    edit = resp.json()
    assert edit["ended_layers"] == ["PLPRIM1"]
    assert len(edit["new_layers"]) == 1
    at = datetime.fromisoformat(edit["effective"].replace("Z", "+00:00"))
    assert abs((at - now).total_seconds()) < 5
    assert _final(client, "PSPRIMA", now - timedelta(days=21), at) == [
        e if e[1] <= edit["effective"] else (e[0], edit["effective"], e[2])
        for e in past
        if e[0] < edit["effective"]
    ]
    after = _final(client, "PSPRIMA", at, at + timedelta(days=42))
    assert after
    assert "PUBOB01" not in {e[2] for e in after}
    assert {e[2] for e in after} == {"PUALICE", "PUCAROL"}
    # the edit ended the old layer and started a successor at the edit instant
    layers = client.get("/schedules/PSPRIMA").json()["schedule"]["schedule_layers"]
    by_id = {la["id"]: la for la in layers}
    assert by_id["PLPRIM1"]["end"] == by_id[edit["new_layers"][0]]["start"]
    assert [u["user"]["id"] for u in by_id[edit["new_layers"][0]]["users"]] == [
        "PUALICE",
        "PUCAROL",
    ]
    # Bob is still a user of the account and still named by the schedule (past layer)
    assert client.get("/users/PUBOB01").status_code == 200
    again = sim.control.delete("/accounts/acme/schedules/PSPRIMA/users/PUBOB01")
    assert again.status_code == 404


def test_removing_a_user_from_a_v3_rotation_leaves_an_empty_slot(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    now = _now(sim).replace(microsecond=0)
    resp = sim.control.delete(
        "/accounts/acme/schedules/PSFTSUN/users/PUFRANK", params={"rotation_id": "PRFTS01"}
    )
    assert resp.status_code == 200, resp.text
    edit = resp.json()
    assert edit["capped_events"] == ["PEVPAIR"]
    assert len(edit["new_events"]) == 1
    at = datetime.fromisoformat(edit["effective"].replace("Z", "+00:00"))

    def members(since: datetime, until: datetime) -> list[tuple[str | None, str]]:
        fs = client.get(
            "/v3/schedules/PSFTSUN",
            params={
                "include[]": "final_schedule",
                "since": since.isoformat(),
                "until": until.isoformat(),
            },
        ).json()["schedule"]["final_schedule"]
        return [
            (a["member"].get("user_id"), a["source"]["rotation_id"])
            for a in fs["computed_shift_assignments"]
            if a["source"].get("rotation_id") == "PRFTS01"
        ]

    before = members(now - timedelta(days=2), at - timedelta(seconds=1))
    after = members(at + timedelta(seconds=1), at + timedelta(days=2))
    assert "PUFRANK" in {m for m, _ in before}
    assert "PUFRANK" not in {m for m, _ in after}
    assert {m for m, _ in after} == {"PUERIN1", None}  # Frank's seat is an empty_member
    # the capped event and its successor are both listed, the successor from the edit on
    events = client.get("/v3/schedules/PSFTSUN").json()["schedule"]["rotations"][0]["events"]
    assert events[0]["effective_until"] == events[1]["effective_since"] == edit["effective"]
    assert events[1]["assignment_strategy"]["members"] == [
        {"type": "user_member", "user_id": "PUERIN1"},
        {"type": "empty_member"},
    ]


def test_remove_user_route_errors(sim: SimulatorHandle) -> None:
    base = "/accounts/acme/schedules/PSPRIMA/users"
    assert sim.control.delete(f"{base}/PUERIN1").status_code == 404  # not on that schedule
    assert sim.control.delete(f"{base}/PNOBODY").status_code == 404
    assert sim.control.delete(f"{base}/PUBOB01", params={"layer_id": "PLNOPE"}).status_code == 404
    ok = sim.control.delete(f"{base}/PUBOB01", params={"layer_id": "PLPRIM1"})
    assert ok.status_code == 200

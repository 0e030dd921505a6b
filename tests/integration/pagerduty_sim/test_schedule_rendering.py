"""What the schedule endpoints render, and when: PagerDuty's behaviour, not its schema's.

- `GET /schedules` never renders final_schedule / overrides_subschedule (api-schema#430); layer
  entries only with include[]=schedule_layers AND since, until, time_zone.
- `GET /schedules/{id}` renders entries only with since/until; a window under a second renders
  nothing (api-schema#479); exactly equal since/until renders what is on at that instant.
- `GET /schedules/{id}/users` without a window lists everyone on the schedule.
"""

from __future__ import annotations

import httpx

from pagerduty_sim.server import SimulatorHandle

WEEK1 = {"since": "2024-01-01T00:00:00Z", "until": "2024-01-08T00:00:00Z", "time_zone": "UTC"}
EVERY = ["final_schedule", "schedule_layers", "overrides_subschedule"]


def _override_dave_jan2(sim: SimulatorHandle) -> None:
    sim.control.post(
        "/accounts/acme/schedules/PSPRIMA/overrides",
        json={"user_id": "PUDAVE1", "start": "2024-01-02T00:00:00Z", "end": "2024-01-03T00:00:00Z"},
    ).raise_for_status()


def _listed(client: httpx.Client, **params: object) -> dict[str, dict]:
    resp = client.get("/schedules", params=params)
    assert resp.status_code == 200, resp.text
    return {s["id"]: s for s in resp.json()["schedules"]}


def test_list_never_renders_final_schedule_or_overrides(client: httpx.Client) -> None:
    for params in ({"include[]": EVERY, **WEEK1}, {"include[]": EVERY}, {"include[]": EVERY[0]}):
        for sched in _listed(client, **params).values():
            assert "final_schedule" not in sched
            assert "overrides_subschedule" not in sched


def test_list_renders_layer_entries_only_with_since_until_and_time_zone(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    _override_dave_jan2(sim)
    full = _listed(client, **{"include[]": "schedule_layers"}, **WEEK1)["PSPRIMA"]
    (layer,) = full["schedule_layers"]
    # layer entries ignore overrides: Dave's override on Jan 2 does not show
    assert [
        (e["start"], e["end"], e["user"]["id"]) for e in layer["rendered_schedule_entries"]
    ] == [("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z", "PUALICE")]
    assert layer["rendered_coverage_percentage"] == 100.0
    for missing in ("since", "until", "time_zone"):
        params = {k: v for k, v in WEEK1.items() if k != missing}
        sched = _listed(client, **{"include[]": "schedule_layers"}, **params)["PSPRIMA"]
        (layer,) = sched["schedule_layers"]
        assert layer["rendered_schedule_entries"] == [], missing
        assert layer["rendered_coverage_percentage"] is None
        assert layer["rotation_turn_length_seconds"] == 604800  # the layer itself is there
    assert "schedule_layers" not in _listed(client, **WEEK1)["PSPRIMA"]


def test_detail_without_since_until_renders_no_entries(client: httpx.Client) -> None:
    body = client.get("/schedules/PSPRIMA").json()["schedule"]
    # thegreenrobot/pagerduty_dashing#19: empty entries, null coverage
    for sub, name in (("final_schedule", "Final Schedule"), ("overrides_subschedule", "Overrides")):
        assert body[sub] == {
            "name": name,
            "rendered_schedule_entries": [],
            "rendered_coverage_percentage": None,
        }
    (layer,) = body["schedule_layers"]
    assert layer["rendered_schedule_entries"] == []
    assert layer["rendered_coverage_percentage"] is None
    assert [u["user"]["id"] for u in layer["users"]] == ["PUALICE", "PUBOB01", "PUCAROL"]


def test_detail_with_one_bound_renders(client: httpx.Client) -> None:
    body = client.get(
        "/schedules/PSPRIMA", params={"since": "2024-01-01T00:00:00Z", "time_zone": "UTC"}
    ).json()["schedule"]
    entries = body["final_schedule"]["rendered_schedule_entries"]
    assert [e["user"]["id"] for e in entries] == ["PUALICE", "PUBOB01"]  # two weeks by default


def test_sub_second_window_renders_nothing(client: httpx.Client) -> None:
    # api-schema#479: since/until a few microseconds apart may render nothing
    body = client.get(
        "/schedules/PSPRIMA",
        params={"since": "2024-01-03T10:00:00.000100Z", "until": "2024-01-03T10:00:00.000300Z"},
    ).json()["schedule"]
    assert body["final_schedule"]["rendered_schedule_entries"] == []
    assert body["overrides_subschedule"]["rendered_schedule_entries"] == []
    assert body["schedule_layers"][0]["rendered_schedule_entries"] == []
    whole = client.get(
        "/schedules/PSPRIMA",
        params={"since": "2024-01-03T10:00:00Z", "until": "2024-01-03T10:00:01Z"},
    ).json()["schedule"]
    assert [e["user"]["id"] for e in whole["final_schedule"]["rendered_schedule_entries"]] == [
        "PUALICE"
    ]


def test_equal_since_until_renders_the_instant(client: httpx.Client) -> None:
    # api-schema#479: "If they match exactly, we get a rendered schedule as expected."
    at = "2024-01-09T10:00:00.123456Z"
    body = client.get(
        "/schedules/PSPRIMA", params={"since": at, "until": at, "time_zone": "UTC"}
    ).json()["schedule"]
    (entry,) = body["final_schedule"]["rendered_schedule_entries"]
    assert entry["user"]["id"] == "PUBOB01"
    assert entry["start"] == entry["end"] == "2024-01-09T10:00:00Z"


def test_overrides_render_in_detail_only(sim: SimulatorHandle, client: httpx.Client) -> None:
    _override_dave_jan2(sim)
    body = client.get("/schedules/PSPRIMA", params=WEEK1).json()["schedule"]
    assert [
        e["user"]["id"] for e in body["overrides_subschedule"]["rendered_schedule_entries"]
    ] == ["PUDAVE1"]
    assert [e["user"]["id"] for e in body["final_schedule"]["rendered_schedule_entries"]] == [
        "PUALICE",
        "PUDAVE1",
        "PUALICE",
    ]


def test_schedule_users_without_window_lists_everyone(client: httpx.Client) -> None:
    users = client.get("/schedules/PSPRIMA/users").json()["users"]
    assert [u["id"] for u in users] == ["PUALICE", "PUBOB01", "PUCAROL"]
    assert all(u["type"] == "user" for u in users)
    assert all("@" in u["email"] for u in users)
    # the demo override puts Dave on call now, but he is on no layer: not listed without a window
    assert "PUDAVE1" not in {u["id"] for u in users}


def test_schedule_users_with_window_are_who_is_on_call(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    _override_dave_jan2(sim)
    users = client.get(
        "/schedules/PSPRIMA/users",
        params={"since": "2024-01-01T00:00:00Z", "until": "2024-01-03T00:00:00Z"},
    ).json()["users"]
    assert [u["id"] for u in users] == ["PUALICE", "PUDAVE1"]

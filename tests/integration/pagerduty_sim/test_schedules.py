"""Schedules are computed: rotations, layers, overrides, restrictions, v3 shifts, /oncalls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from models.clock import utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import LAYERED, load

pytestmark = pytest.mark.clock  # the clock lane runs it at other hours too

PRIMARY = ["PUALICE", "PUBOB01", "PUCAROL"]  # weekly, anchored Monday 2024-01-01T00:00Z
SECONDARY = ["PUBOB01", "PUCAROL", "PUDAVE1", "PUCONTR"]  # daily, same anchor
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def final(client: httpx.Client, sid: str, since: str, until: str, **extra: str) -> list[tuple]:
    resp = client.get(
        f"/schedules/{sid}", params={"since": since, "until": until, "time_zone": "UTC", **extra}
    )
    assert resp.status_code == 200, resp.text
    entries = resp.json()["schedule"]["final_schedule"]["rendered_schedule_entries"]
    return [(e["start"], e["end"], e["user"]["id"]) for e in entries]


def test_weekly_rotation_across_turns(client: httpx.Client) -> None:
    assert final(client, "PSPRIMA", "2024-01-01T00:00:00Z", "2024-01-29T00:00:00Z") == [
        ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z", "PUALICE"),
        ("2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z", "PUBOB01"),
        ("2024-01-15T00:00:00Z", "2024-01-22T00:00:00Z", "PUCAROL"),
        ("2024-01-22T00:00:00Z", "2024-01-29T00:00:00Z", "PUALICE"),
    ]


def test_window_inside_a_turn_is_clipped_and_overflow_shows_the_whole_turn(
    client: httpx.Client,
) -> None:
    assert final(client, "PSPRIMA", "2024-01-03T12:00:00Z", "2024-01-09T00:00:00Z") == [
        ("2024-01-03T12:00:00Z", "2024-01-08T00:00:00Z", "PUALICE"),
        ("2024-01-08T00:00:00Z", "2024-01-09T00:00:00Z", "PUBOB01"),
    ]
    assert final(
        client, "PSPRIMA", "2024-01-03T12:00:00Z", "2024-01-09T00:00:00Z", overflow="true"
    ) == [
        ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z", "PUALICE"),
        ("2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z", "PUBOB01"),
    ]


def test_rotation_far_from_its_anchor(client: httpx.Client) -> None:
    # 2026-03-02 is a Monday; the number of whole turns since the anchor picks the person
    start = datetime(2026, 3, 2, tzinfo=UTC)
    weeks = (start - EPOCH).days // 7
    got = final(client, "PSPRIMA", iso(start + timedelta(hours=1)), iso(start + timedelta(hours=2)))
    assert got == [
        (iso(start + timedelta(hours=1)), iso(start + timedelta(hours=2)), PRIMARY[weeks % 3])
    ]
    day = datetime(2026, 3, 5, tzinfo=UTC)
    got = final(client, "PSSECON", iso(day), iso(day + timedelta(days=2)))
    days = (day - EPOCH).days
    assert [g[2] for g in got] == [SECONDARY[days % 4], SECONDARY[(days + 1) % 4]]


def test_time_zone_parameter_renders_offsets(client: httpx.Client) -> None:
    resp = client.get(
        "/schedules/PSPRIMA",
        params={
            "since": "2024-01-01T00:00:00Z",
            "until": "2024-01-02T00:00:00Z",
            "time_zone": "America/New_York",
        },
    )
    entry = resp.json()["schedule"]["final_schedule"]["rendered_schedule_entries"][0]
    assert entry["start"] == "2023-12-31T19:00:00-05:00"


def test_override_wins_over_layers(sim: SimulatorHandle, client: httpx.Client) -> None:
    resp = sim.control.post(
        "/accounts/acme/schedules/PSPRIMA/overrides",
        json={"user_id": "PUDAVE1", "start": "2024-01-02T00:00:00Z", "end": "2024-01-03T00:00:00Z"},
    )
    assert resp.status_code == 200
    assert final(client, "PSPRIMA", "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z") == [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "PUALICE"),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "PUDAVE1"),
        ("2024-01-03T00:00:00Z", "2024-01-08T00:00:00Z", "PUALICE"),
    ]
    body = client.get(
        "/schedules/PSPRIMA",
        params={"since": "2024-01-01T00:00:00Z", "until": "2024-01-08T00:00:00Z"},
    ).json()["schedule"]
    overrides = body["overrides_subschedule"]["rendered_schedule_entries"]
    assert [o["user"]["id"] for o in overrides] == ["PUDAVE1"]
    layer_users = [e["user"]["id"] for e in body["schedule_layers"][0]["rendered_schedule_entries"]]
    assert layer_users == ["PUALICE"]  # layers still show the rotation underneath


def test_demo_override_puts_dave_on_call_now(client: httpx.Client) -> None:
    now = utcnow()
    got = final(client, "PSPRIMA", iso(now), iso(now + timedelta(seconds=1)))
    assert [g[2] for g in got] == ["PUDAVE1"]


def test_later_layer_wins_only_where_it_has_coverage(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    load(sim, LAYERED)
    got = final(client, "PSLAY", "2024-01-02T00:00:00Z", "2024-01-04T00:00:00Z")
    assert got == [
        ("2024-01-02T00:00:00Z", "2024-01-02T09:00:00Z", "PUB"),
        ("2024-01-02T09:00:00Z", "2024-01-02T17:00:00Z", "PUC"),
        ("2024-01-02T17:00:00Z", "2024-01-03T00:00:00Z", "PUB"),
        ("2024-01-03T00:00:00Z", "2024-01-03T09:00:00Z", "PUA"),
        ("2024-01-03T09:00:00Z", "2024-01-03T17:00:00Z", "PUD"),
        ("2024-01-03T17:00:00Z", "2024-01-04T00:00:00Z", "PUA"),
    ]
    sched = client.get(
        "/schedules/PSLAY",
        params={"since": "2024-01-02T00:00:00Z", "until": "2024-01-03T00:00:00Z"},
    ).json()["schedule"]
    # highest-priority layer first; its coverage is 8 of 24 hours
    assert sched["schedule_layers"][0]["rendered_coverage_percentage"] == round(800 / 24, 2)
    assert sched["final_schedule"]["rendered_coverage_percentage"] == 100.0


def test_schedule_objects_list_users_and_policies(client: httpx.Client) -> None:
    scheds = {s["id"]: s for s in client.get("/schedules").json()["schedules"]}
    assert set(scheds) == {"PSPRIMA", "PSSECON", "PSUNUSE"}  # the v3 one is not listed here
    assert [u["id"] for u in scheds["PSPRIMA"]["users"]] == PRIMARY
    assert {p["id"] for p in scheds["PSPRIMA"]["escalation_policies"]} == {"PEPENG1", "PEPOPS1"}
    assert scheds["PSUNUSE"]["escalation_policies"] == []
    assert "final_schedule" not in scheds["PSPRIMA"]


def test_schedule_users_are_full_user_objects_for_the_window(client: httpx.Client) -> None:
    users = client.get(
        "/schedules/PSPRIMA/users",
        params={"since": "2024-01-01T00:00:00Z", "until": "2024-01-15T00:00:00Z"},
    ).json()["users"]
    assert [(u["id"], u["email"]) for u in users] == [
        ("PUALICE", "alice@example.com"),
        ("PUBOB01", "bob@example.com"),
    ]


def v3_assignments(client: httpx.Client, sid: str, since: str, until: str) -> list[tuple]:
    resp = client.get(
        f"/v3/schedules/{sid}",
        params={"include[]": "final_schedule", "since": since, "until": until, "time_zone": "UTC"},
    )
    assert resp.status_code == 200, resp.text
    fs = resp.json()["schedule"]["final_schedule"]
    return sorted(
        (a["start_time"], a["end_time"], a["member"].get("user_id"))
        for a in fs["computed_shift_assignments"]
    )


def test_v3_schedules_listed_only_under_v3(client: httpx.Client) -> None:
    v3 = client.get("/v3/schedules").json()
    assert [(s["id"], s["type"]) for s in v3["schedules"]] == [("PSFTSUN", "schedule_v3_reference")]
    assert v3["limit"] == 100
    assert client.get("/schedules/PSFTSUN").status_code == 404
    resp = client.get("/v3/schedules/PSPRIMA")  # never upgraded
    assert resp.status_code == 400
    assert client.get("/v3/schedules", params={"limit": 1001}).status_code == 400


def test_v3_assignments_overlap(client: httpx.Client) -> None:
    got = v3_assignments(client, "PSFTSUN", "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert got == [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "PUERIN1"),
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "PUFRANK"),
        ("2024-01-01T12:00:00Z", "2024-01-01T18:00:00Z", "PUCONTR"),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "PUERIN1"),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "PUFRANK"),
        ("2024-01-02T12:00:00Z", "2024-01-02T18:00:00Z", "PUCAROL"),
    ]
    at_13h = [a for a in got if a[0] <= "2024-01-01T13:00:00Z" < a[1]]
    assert len(at_13h) == 3  # several people on call at once


def test_upgrade_moves_schedule_to_v3(sim: SimulatorHandle, client: httpx.Client) -> None:
    assert sim.control.post("/accounts/acme/schedules/PSSECON/upgrade").status_code == 200
    listed = [s["id"] for s in client.get("/schedules").json()["schedules"]]
    assert "PSSECON" not in listed
    v3 = [s["id"] for s in client.get("/v3/schedules").json()["schedules"]]
    assert sorted(v3) == ["PSFTSUN", "PSSECON"]
    got = v3_assignments(client, "PSSECON", "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert [g[2] for g in got] == ["PUBOB01", "PUCAROL"]
    oncalls = client.get(
        "/oncalls",
        params={
            "schedule_ids[]": "PSSECON",
            "since": "2024-01-01T01:00:00Z",
            "until": "2024-01-01T01:00:00Z",
        },
    ).json()["oncalls"]
    assert oncalls[0]["schedule"]["type"] == "schedule_v3_reference"


def oncall_rows(client: httpx.Client, **params: Any) -> list[tuple]:
    resp = client.get(
        "/oncalls",
        params={
            "since": "2024-01-01T13:00:00Z",
            "until": "2024-01-01T13:00:00Z",
            "limit": 100,
            **params,
        },
    )
    assert resp.status_code == 200, resp.text
    return sorted(
        (
            o["escalation_policy"]["id"],
            o["escalation_level"],
            o["user"]["id"],
            (o["schedule"] or {}).get("id"),
        )
        for o in resp.json()["oncalls"]
    )


def test_oncalls_follow_escalation_policies(client: httpx.Client) -> None:
    assert oncall_rows(client) == sorted(
        [
            ("PEPENG1", 1, "PUALICE", "PSPRIMA"),
            ("PEPENG1", 2, "PUBOB01", "PSSECON"),
            ("PEPENG1", 3, "PUALICE", None),  # direct user target: permanent on-call
            ("PEPOPS1", 1, "PUALICE", "PSPRIMA"),  # same schedule, second policy: listed twice
            ("PEPOPS1", 2, "PUCONTR", "PSFTSUN"),
            ("PEPOPS1", 2, "PUERIN1", "PSFTSUN"),
            ("PEPOPS1", 2, "PUFRANK", "PSFTSUN"),
        ]
    )
    scheds = {row[3] for row in oncall_rows(client)}
    assert "PSUNUSE" not in scheds  # used by no policy: absent


def test_oncall_entries_carry_the_real_shift_bounds(client: httpx.Client) -> None:
    resp = client.get(
        "/oncalls",
        params={
            "since": "2024-01-01T13:00:00Z",
            "until": "2024-01-01T13:00:00Z",
            "schedule_ids[]": "PSPRIMA",
            "time_zone": "UTC",
        },
    )
    entries = resp.json()["oncalls"]
    assert {(o["start"], o["end"]) for o in entries} == {
        ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z")
    }


def test_oncalls_filters(client: httpx.Client) -> None:
    assert oncall_rows(client, **{"user_ids[]": "PUERIN1"}) == [
        ("PEPOPS1", 2, "PUERIN1", "PSFTSUN")
    ]
    assert {r[0] for r in oncall_rows(client, **{"escalation_policy_ids[]": "PEPOPS1"})} == {
        "PEPOPS1"
    }
    assert oncall_rows(client, **{"schedule_ids[]": ["PSSECON", "PSFTSUN"]}) == sorted(
        [
            ("PEPENG1", 2, "PUBOB01", "PSSECON"),
            ("PEPOPS1", 2, "PUCONTR", "PSFTSUN"),
            ("PEPOPS1", 2, "PUERIN1", "PSFTSUN"),
            ("PEPOPS1", 2, "PUFRANK", "PSFTSUN"),
        ]
    )


def test_oncalls_now_includes_the_unmatched_contractor_some_days(client: httpx.Client) -> None:
    # over four days of the daily Secondary rotation the contractor is on call once
    rows = client.get(
        "/oncalls",
        params={
            "since": "2024-01-01T00:00:00Z",
            "until": "2024-01-04T23:00:00Z",
            "schedule_ids[]": "PSSECON",
        },
    ).json()["oncalls"]
    assert [o["user"]["id"] for o in rows] == SECONDARY

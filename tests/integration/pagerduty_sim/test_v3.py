"""Shift-based (v3) schedules as PagerDuty computes them (facts; developer docs "Schedules v2 to
v3 upgrade guide"): per-rotation overrides, custom shifts, RRULE BYDAY/MONTHLY, sources."""

from __future__ import annotations

from typing import Any

import httpx

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import DEMO_KEY, load

SOURCES = {
    "schedule_rotation",
    "custom_shift",
    "schedule_rotation_override",
    "custom_shift_override",
}
JAN1 = {"since": "2024-01-01T00:00:00Z", "until": "2024-01-02T00:00:00Z", "time_zone": "UTC"}


def assignments(client: httpx.Client, sid: str, **params: Any) -> list[dict[str, Any]]:
    resp = client.get(
        f"/v3/schedules/{sid}", params={"include[]": "final_schedule", **JAN1, **params}
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()["schedule"]["final_schedule"]["computed_shift_assignments"]
    assert {a["source"]["type"] for a in out} <= SOURCES
    return out


def at(rows: list[dict[str, Any]], when: str) -> list[tuple[str | None, str]]:
    return sorted(
        (a["member"].get("user_id") or "", a["source"]["type"])
        for a in rows
        if a["start_time"] <= when < a["end_time"]
    )


def test_override_replaces_only_the_overridden_member_of_one_rotation(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    resp = sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/overrides",
        json={
            "rotation_id": "PRFTS01",
            "overridden_user_id": "PUFRANK",
            "user_id": "PUDAVE1",
            "start": "2024-01-01T10:00:00Z",
            "end": "2024-01-01T14:00:00Z",
        },
    )
    assert resp.status_code == 200, resp.text
    ov = resp.json()
    rows = assignments(client, "PSFTSUN")
    # 13:00: Erin keeps her shift, Dave replaces Frank, the other rotation keeps Casey
    assert at(rows, "2024-01-01T13:00:00Z") == [
        ("PUCONTR", "schedule_rotation"),
        ("PUDAVE1", "schedule_rotation_override"),
        ("PUERIN1", "schedule_rotation"),
    ]
    assert at(rows, "2024-01-01T09:00:00Z") == [
        ("PUERIN1", "schedule_rotation"),
        ("PUFRANK", "schedule_rotation"),
    ]
    (dave,) = [a for a in rows if a["member"].get("user_id") == "PUDAVE1"]
    assert dave["source"] == {
        "type": "schedule_rotation_override",
        "override_id": ov["id"],
        "rotation_id": "PRFTS01",
    }
    assert (dave["start_time"], dave["end_time"]) == (
        "2024-01-01T10:00:00Z",
        "2024-01-01T14:00:00Z",
    )
    frank = sorted(
        (a["start_time"], a["end_time"]) for a in rows if a["member"].get("user_id") == "PUFRANK"
    )
    assert frank == [
        ("2024-01-01T00:00:00Z", "2024-01-01T10:00:00Z"),
        ("2024-01-01T14:00:00Z", "2024-01-02T00:00:00Z"),
    ]


def test_override_without_overridden_member_replaces_that_rotations_member(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/overrides",
        json={
            "rotation_id": "PRFTS02",
            "user_id": "PUBOB01",
            "start": "2024-01-01T12:00:00Z",
            "end": "2024-01-01T15:00:00Z",
        },
    ).raise_for_status()
    assert at(assignments(client, "PSFTSUN"), "2024-01-01T13:00:00Z") == [
        ("PUBOB01", "schedule_rotation_override"),
        ("PUERIN1", "schedule_rotation"),
        ("PUFRANK", "schedule_rotation"),
    ]


def test_v3_override_needs_a_target_when_there_are_several_rotations(
    sim: SimulatorHandle,
) -> None:
    resp = sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/overrides", json={"user_id": "PUBOB01"}
    )
    assert resp.status_code == 400
    assert "rotation_id" in resp.json()["error"]
    bad = sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/overrides",
        json={"user_id": "PUBOB01", "rotation_id": "PRNOPE"},
    )
    assert bad.status_code == 400


def test_custom_shift_adds_a_responder_and_can_be_overridden(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    cs = sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/custom_shifts",
        json={"user_id": "PUBOB01", "start": "2024-01-01T13:00:00Z", "duration_seconds": 3600},
    )
    assert cs.status_code == 200, cs.text
    shift = cs.json()
    rows = assignments(client, "PSFTSUN")
    assert at(rows, "2024-01-01T13:30:00Z") == [
        ("PUBOB01", "custom_shift"),
        ("PUCONTR", "schedule_rotation"),
        ("PUERIN1", "schedule_rotation"),
        ("PUFRANK", "schedule_rotation"),
    ]
    (bob,) = [a for a in rows if a["source"]["type"] == "custom_shift"]
    assert bob["source"] == {"type": "custom_shift", "shift_id": shift["id"]}
    ov = sim.control.post(
        "/accounts/acme/schedules/PSFTSUN/overrides",
        json={
            "custom_shift_id": shift["id"],
            "user_id": "PUALICE",
            "start": "2024-01-01T13:30:00Z",
            "end": "2024-01-01T14:00:00Z",
        },
    ).json()
    rows = assignments(client, "PSFTSUN")
    assert ("PUALICE", "custom_shift_override") in at(rows, "2024-01-01T13:45:00Z")
    assert ("PUBOB01", "custom_shift") in at(rows, "2024-01-01T13:15:00Z")
    (alice,) = [a for a in rows if a["source"]["type"] == "custom_shift_override"]
    assert alice["source"] == {
        "type": "custom_shift_override",
        "override_id": ov["id"],
        "shift_id": shift["id"],
    }
    deleted = sim.control.delete(f"/accounts/acme/schedules/PSFTSUN/custom_shifts/{shift['id']}")
    assert deleted.status_code == 200
    assert {a["source"]["type"] for a in assignments(client, "PSFTSUN")} == {"schedule_rotation"}


def test_custom_shifts_only_on_shift_based_schedules(sim: SimulatorHandle) -> None:
    resp = sim.control.post(
        "/accounts/acme/schedules/PSPRIMA/custom_shifts", json={"user_id": "PUBOB01"}
    )
    assert resp.status_code == 400


BUSINESS: dict[str, Any] = {
    "accounts": [
        {
            "id": "biz",
            "users": [
                {"id": u, "name": u, "email": f"{u.lower()}@biz.example"}
                for u in ("PUA", "PUB", "PUC")
            ],
            "schedules": [
                {
                    "id": "PSBIZ",
                    "name": "Business hours",
                    "version": 3,
                    "time_zone": "America/New_York",
                    "rotations": [
                        {
                            "id": "PRDAY",
                            "events": [
                                {
                                    "id": "PEDAY",
                                    "start_time": {
                                        "date_time": "2024-01-01T09:00:00-05:00",
                                        "time_zone": "America/New_York",
                                    },
                                    "end_time": "2024-01-01T17:00:00-05:00",
                                    "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"],
                                    "assignment_strategy": {
                                        "type": "rotating_member_assignment_strategy",
                                        "members": ["PUA", "PUB"],
                                    },
                                }
                            ],
                        },
                        {
                            "id": "PRMON",
                            "events": [
                                {
                                    "id": "PEMON",
                                    "start_time": "2024-01-06T00:00:00-05:00",
                                    "end_time": "2024-01-07T00:00:00-05:00",
                                    "recurrence": ["RRULE:FREQ=MONTHLY;BYDAY=1SA"],
                                    "assignment_strategy": {
                                        "type": "every_member_assignment_strategy",
                                        "members": [{"type": "user_member", "user_id": "PUC"}],
                                    },
                                }
                            ],
                        },
                    ],
                }
            ],
        }
    ],
    "api_keys": [{"label": "biz", "key": DEMO_KEY, "account": "biz"}],
}


def test_weekly_byday_and_monthly_rotations(sim: SimulatorHandle, client: httpx.Client) -> None:
    load(sim, BUSINESS)
    rows = assignments(
        client,
        "PSBIZ",
        since="2024-01-01T00:00:00Z",
        until="2024-02-10T00:00:00Z",
        time_zone="America/New_York",
    )
    weekdays = [
        (a["start_time"], a["member"]["user_id"])
        for a in rows
        if a["source"]["rotation_id"] == "PRDAY"
    ]
    assert weekdays[:6] == [
        ("2024-01-01T09:00:00-05:00", "PUA"),
        ("2024-01-02T09:00:00-05:00", "PUB"),
        ("2024-01-03T09:00:00-05:00", "PUA"),
        ("2024-01-04T09:00:00-05:00", "PUB"),
        ("2024-01-05T09:00:00-05:00", "PUA"),
        ("2024-01-08T09:00:00-05:00", "PUB"),  # Sat/Sun skipped, the turn order continues
    ]
    assert len(weekdays) == 30  # Mon..Fri from Jan 1 to Fri Feb 9
    monthly = [a["start_time"] for a in rows if a["source"]["rotation_id"] == "PRMON"]
    assert monthly == ["2024-01-06T00:00:00-05:00", "2024-02-03T00:00:00-05:00"]
    detail = client.get("/v3/schedules/PSBIZ").json()["schedule"]
    assert detail["rotations"][0]["events"][0]["recurrence"] == [
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    ]


def test_v3_detail_embeds_users_only_when_asked(client: httpx.Client) -> None:
    plain = client.get("/v3/schedules/PSFTSUN").json()["schedule"]
    assert "users" not in plain
    assert "final_schedule" not in plain
    asked = client.get("/v3/schedules/PSFTSUN", params={"include[]": "users"}).json()["schedule"]
    assert [u["id"] for u in asked["users"]] == ["PUERIN1", "PUFRANK", "PUCONTR", "PUCAROL"]
    assert "final_schedule" not in asked


def test_v3_final_schedule_needs_a_window(client: httpx.Client) -> None:
    body = client.get("/v3/schedules/PSFTSUN", params={"include[]": "final_schedule"}).json()
    assert "final_schedule" not in body["schedule"]


def test_v3_list_has_no_total_and_no_query(client: httpx.Client) -> None:
    body = client.get("/v3/schedules", params={"total": "true", "query": "zzz"}).json()
    assert "total" not in body
    assert [s["id"] for s in body["schedules"]] == ["PSFTSUN"]


def test_scenario_v3_overrides_and_custom_shifts(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    scenario = {
        "accounts": [
            {
                "id": "s3",
                "users": [
                    {"id": u, "name": u, "email": f"{u.lower()}@s3.example"}
                    for u in ("PUA", "PUB", "PUC")
                ],
                "schedules": [
                    {
                        "id": "PS3",
                        "name": "S3",
                        "version": 3,
                        "rotations": [
                            {
                                "id": "PR1",
                                "events": [
                                    {
                                        "start_time": "2024-01-01T00:00:00Z",
                                        "end_time": "2024-01-02T00:00:00Z",
                                        "recurrence": ["RRULE:FREQ=DAILY"],
                                        "assignment_strategy": {
                                            "type": "rotating_member_assignment_strategy",
                                            "members": ["PUA", "PUB"],
                                        },
                                    }
                                ],
                            }
                        ],
                        "custom_shifts": [
                            {
                                "id": "PCS1",
                                "start_time": "2024-01-01T06:00:00Z",
                                "end_time": "2024-01-01T07:00:00Z",
                                "assignments": [
                                    {"member": {"type": "user_member", "user_id": "PUC"}}
                                ],
                            }
                        ],
                        "overrides": [
                            {
                                "rotation_id": "PR1",
                                "start_time": "2024-01-01T02:00:00Z",
                                "end_time": "2024-01-01T03:00:00Z",
                                "overridden_member": {"type": "user_member", "user_id": "PUA"},
                                "overriding_member": {"type": "user_member", "user_id": "PUC"},
                            }
                        ],
                    }
                ],
            }
        ],
        "api_keys": [{"label": "s3", "key": DEMO_KEY, "account": "s3"}],
    }
    load(sim, scenario)
    rows = assignments(client, "PS3")
    assert at(rows, "2024-01-01T02:30:00Z") == [("PUC", "schedule_rotation_override")]
    assert at(rows, "2024-01-01T06:30:00Z") == [
        ("PUA", "schedule_rotation"),
        ("PUC", "custom_shift"),
    ]


def test_single_rotation_overrides_need_no_target(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    upgraded = sim.control.post(
        "/accounts/acme/schedules/PSSECON/upgrade",
        json={
            "rotations": [
                {
                    "id": "PRONE",
                    "events": [
                        {
                            "start_time": "2024-01-01T00:00:00Z",
                            "end_time": "2024-01-02T00:00:00Z",
                            "recurrence": ["RRULE:FREQ=DAILY"],
                            "assignment_strategy": {"members": ["PUBOB01", "PUCAROL"]},
                        }
                    ],
                }
            ]
        },
    )
    assert upgraded.status_code == 200, upgraded.text
    resp = sim.control.post(
        "/accounts/acme/schedules/PSSECON/overrides",
        json={"user_id": "PUDAVE1", "start": "2024-01-01T05:00:00Z", "duration_seconds": 3600},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["rotation_id"] == "PRONE"
    assert at(assignments(client, "PSSECON"), "2024-01-01T05:30:00Z") == [
        ("PUDAVE1", "schedule_rotation_override")
    ]

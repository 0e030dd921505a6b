"""GET /v1/workspaces/{W}/on-call-report (JSON and CSV) and the workspace's time zone setting."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from models import OnDutyInterval, Rotation

pytestmark = pytest.mark.both_databases

H = timedelta(hours=1)
# A winter Tuesday 06:00 UTC, long past: nothing else writes history for it.
SINCE = datetime(2026, 1, 13, 6, tzinfo=UTC)


@pytest.fixture
def history(session, world) -> Rotation:
    """Ada on duty 06:00-10:00, then a PagerDuty user no member matches 10:00-12:00."""
    rot = Rotation(workspace_id=world.ws.id, name="Primary")
    session.add(rot)
    session.flush()
    session.add_all(
        [
            OnDutyInterval(
                workspace_id=world.ws.id,
                rotation_id=rot.id,
                member_id=world.admin.id,
                name="Ada Admin",
                email="admin@acme.test",
                started_at=SINCE,
                ended_at=SINCE + 4 * H,
                source="sync",
            ),
            OnDutyInterval(
                workspace_id=world.ws.id,
                rotation_id=rot.id,
                pagerduty_user_id="PUSTRAN",
                name="=Stranger",
                email="s@elsewhere.test",
                started_at=SINCE + 4 * H,
                ended_at=SINCE + 6 * H,
                source="handoff",
            ),
        ]
    )
    session.commit()
    return rot


def _url(world, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/v1/workspaces/{world.ws.id}/on-call-report?{query}"


def _period() -> dict[str, str]:
    return {
        "since": SINCE.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": (SINCE + 6 * H).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def test_admins_get_each_persons_seconds_in_the_workspace_zone(client, world, history) -> None:
    r = client.put(
        f"/v1/workspaces/{world.ws.id}/settings",
        json={"time_zone": "Europe/Paris"},
        headers=world.headers(world.owner),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"time_zone": "Europe/Paris"}

    r = client.get(_url(world, **_period()), headers=world.headers(world.admin))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["time_zone"] == "Europe/Paris"
    ada, stranger = body["people"]
    # 06:00-10:00 UTC is 07:00-11:00 in Paris in winter: 2 hours before 09:00.
    assert (ada["name"], ada["kind"], ada["member_id"]) == (
        "Ada Admin",
        "member",
        str(world.admin.id),
    )
    assert (ada["seconds_on_duty"], ada["seconds_outside_business_hours"]) == (14400, 7200)
    assert (stranger["kind"], stranger["pagerduty_user_id"]) == ("pagerduty_user", "PUSTRAN")
    assert stranger["seconds_on_duty"] + ada["seconds_on_duty"] == 6 * 3600
    assert stranger["seconds_on_weekends"] == 0


def test_accept_text_csv_gives_the_same_rows_as_csv(client, world, history) -> None:
    headers = {**world.headers(world.admin), "Accept": "text/csv"}
    r = client.get(_url(world, **_period(), rotation_id=str(history.id)), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["name"], row["seconds_on_duty"], row["shifts"]) for row in rows] == [
        ("Ada Admin", "14400", "1"),
        ("'=Stranger", "7200", "1"),  # never a formula in a spreadsheet
    ]


def test_a_member_is_refused_with_a_json_403(client, world, history) -> None:
    r = client.get(_url(world, **_period()), headers=world.headers(world.member))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "role_forbidden"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, 400, "invalid_period"),
        (
            {"since": "2025-01-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
            400,
            "period_too_long",
        ),
        ({"since": "yesterday"}, 422, "invalid_request"),
        ({"rotation_id": "00000000-0000-0000-0000-000000000000"}, 404, "rotation_not_found"),
    ],
)
def test_bad_parameters_answer_json_saying_what_is_wrong(
    client, world, params: dict[str, str], status: int, code: str
) -> None:
    r = client.get(_url(world, **params), headers=world.headers(world.admin))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


def test_an_unknown_time_zone_is_refused_and_members_may_not_set_one(client, world) -> None:
    url = f"/v1/workspaces/{world.ws.id}/settings"
    r = client.put(url, json={"time_zone": "Mars/Olympus"}, headers=world.headers(world.admin))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_time_zone"
    assert "Mars/Olympus" in r.json()["error"]["message"]
    r = client.put(url, json={"time_zone": "UTC"}, headers=world.headers(world.member))
    assert r.status_code == 403
    assert client.get(url, headers=world.headers(world.member)).json() == {"time_zone": "UTC"}


def test_a_time_zone_change_is_in_the_audit_trail(client, world) -> None:
    """Who changed the zone the report counts hours in, and from what, is on record; saving
    the same zone again records nothing."""
    url = f"/v1/workspaces/{world.ws.id}/settings"
    admin = world.headers(world.admin)
    for zone in ("Europe/Paris", "Europe/Paris"):
        assert client.put(url, json={"time_zone": zone}, headers=admin).status_code == 200
    trail = client.get(f"/v1/workspaces/{world.ws.id}/audit", headers=admin).json()["events"]
    changes = [e for e in trail if e["action"] == "workspace.time_zone"]
    assert [(e["details"], e["actor_member_id"]) for e in changes] == [
        ({"previous": "UTC", "time_zone": "Europe/Paris"}, str(world.admin.id))
    ]

"""The panel's on-call report page: a period picker, a table and a bar per person, for admins."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from models import OnDutyInterval, Rotation
from tests.support.api import act_as

H = timedelta(hours=1)
# Monday 12 January 2026 00:00 UTC; the week is picked as whole days in the workspace's zone.
MONDAY = datetime(2026, 1, 12, tzinfo=UTC)


@pytest.fixture
def week(session, world) -> Rotation:
    """Ada on duty Monday 00:00 to Saturday 00:00, Olive the weekend (UTC)."""
    rot = Rotation(workspace_id=world.ws.id, name="Primary")
    session.add(rot)
    session.flush()
    for who, start, end in [
        (world.admin, MONDAY, MONDAY + 5 * 24 * H),
        (world.owner, MONDAY + 5 * 24 * H, MONDAY + 7 * 24 * H),
    ]:
        session.add(
            OnDutyInterval(
                workspace_id=world.ws.id,
                rotation_id=rot.id,
                member_id=who.id,
                name=who.display_name,
                email=who.email,
                started_at=start,
                ended_at=end,
                source="handoff",
            )
        )
    session.commit()
    return rot


def _cells(html: str, person: str) -> dict[str, str]:
    row = re.search(rf'<tr data-person="{person}">(.*?)</tr>', html, re.S)
    assert row, f"a row for {person}"
    return dict(re.findall(r'<td class="num ([\w-]+)"[^>]*>([^<]*)</td>', row.group(1)))


def test_an_admin_sees_each_persons_hours_and_a_bar_for_the_chosen_days(
    client, world, week
) -> None:
    act_as(client, world.admin)
    assert 'href="/panel/on-call-report"' in client.get("/panel").text  # the way there

    r = client.get("/panel/on-call-report?since=2026-01-12&until=2026-01-18")
    assert r.status_code == 200, r.text
    assert _cells(r.text, "Ada Admin") == {
        "on-duty": "120 h 00 min",
        "shifts": "1",
        "outside": "80 h 00 min",  # 5 days x 16 hours outside 09:00-17:00
        "weekend-time": "0 h 00 min",
    }
    assert _cells(r.text, "Olive Owner")["weekend-time"] == "48 h 00 min"
    assert "168 h 00 min on duty in all" in r.text
    # The bar has its words for screen readers; Ada's is the longest (100 %).
    assert 'aria-label="120 h 00 min on duty: 80 h 00 min outside business hours' in r.text
    assert re.search(r'<span class="business" style="width:33\.33%">', r.text)

    csv_link = re.search(r'id="report-csv" href="([^"]+)"', r.text)
    assert csv_link
    answer = client.get(csv_link.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(x["name"], x["seconds_on_duty"]) for x in rows] == [
        ("Ada Admin", "432000"),
        ("Olive Owner", "172800"),
    ]


def test_the_days_are_the_workspace_zone_s(client, world, week, session) -> None:
    world.ws.time_zone = "Asia/Tokyo"  # UTC+9: Monday 00:00 UTC is Monday 09:00 there
    session.commit()
    act_as(client, world.admin)
    r = client.get("/panel/on-call-report?since=2026-01-12&until=2026-01-12")
    assert r.status_code == 200, r.text
    assert "<b>Asia/Tokyo</b>" in r.text
    assert _cells(r.text, "Ada Admin")["on-duty"] == "15 h 00 min"  # 09:00 to midnight


def test_a_member_is_told_only_admins_see_it(client, world, week) -> None:
    act_as(client, world.member)
    assert 'href="/panel/on-call-report"' not in client.get("/panel").text
    r = client.get("/panel/on-call-report")
    assert r.status_code == 403
    assert "Only the workspace&#39;s Primary Owner or an Admin" in r.text
    assert "Ada Admin" not in r.text
    assert client.get("/panel/on-call-report.csv").status_code == 403


def test_bad_days_say_what_is_wrong(client, world, week) -> None:
    act_as(client, world.admin)
    r = client.get("/panel/on-call-report?since=2026-01-20&until=2026-01-12")
    assert r.status_code == 400
    assert "must be before" in r.text
    r = client.get("/panel/on-call-report?since=12/01/2026")
    assert r.status_code == 400
    assert "Dates must look like 2026-12-31." in r.text


def test_without_a_session_the_page_sends_the_browser_to_the_panel(client) -> None:
    r = client.get("/panel/on-call-report")
    assert r.status_code in (302, 303)
    assert r.headers["location"].endswith("/panel")


def _form_token(html: str) -> str:
    found = re.search(
        r'id="time-zone-form">\s*<input type="hidden" name="csrf_token" value="(\w+)"', html
    )
    assert found, "the time zone form carries a CSRF token"
    return found.group(1)


def test_an_admin_sets_the_workspace_zone_from_the_report(client, world, week) -> None:
    act_as(client, world.admin)
    page = client.get("/panel/on-call-report?since=2026-01-12&until=2026-01-12")
    token = _form_token(page.text)

    refused = client.post(
        "/panel/on-call-report/time-zone",
        data={"csrf_token": token, "time_zone": "Mars/Olympus", "since": "2026-01-12"},
    )
    assert refused.status_code == 422
    assert "Unknown time zone &#39;Mars/Olympus&#39;" in refused.text
    assert "<b>UTC</b>" in refused.text  # nothing changed

    saved = client.post(
        "/panel/on-call-report/time-zone",
        data={
            "csrf_token": token,
            "time_zone": "Asia/Tokyo",
            "since": "2026-01-12",
            "until": "2026-01-12",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/panel/on-call-report?since=2026-01-12&until=2026-01-12"
    again = client.get(saved.headers["location"])
    assert "<b>Asia/Tokyo</b>" in again.text
    assert _cells(again.text, "Ada Admin")["on-duty"] == "15 h 00 min"


def test_the_zone_form_needs_its_csrf_token(client, world, week) -> None:
    act_as(client, world.admin)
    r = client.post("/panel/on-call-report/time-zone", data={"time_zone": "Asia/Tokyo"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"

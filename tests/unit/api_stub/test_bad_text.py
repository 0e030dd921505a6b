"""Text PostgreSQL cannot store (NUL, unpaired surrogates) and other control characters are
refused with a 422 naming the field, API and panel, never a 500; nothing is written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import AuditEvent, PagerDutySchedule, Rotation, TaskRecord
from tests.support import factories
from tests.support.api import act_as, csrf


def _refused(response, field: str, words: str = "control characters") -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [d["field"] for d in error["details"]], error
    assert words in error["message"]


def _connected_with_rotation(session, world):
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PS1", name="Primary"))
    rotation = factories.rotation(session, world.ws, [world.owner], name="Ops")
    session.commit()
    return rotation


def _nothing_written(session) -> None:
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TaskRecord)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize("task_id", ["abc%00def", "%00", "a%1Fb"], ids=["nul", "only-nul", "unit"])
def test_task_id_with_control_characters_is_422(client, world, task_id) -> None:
    _refused(client.get(f"/v1/tasks/{task_id}", headers=world.headers(world.member)), "task_id")


@pytest.mark.parametrize("query", ["%00", "Prim%00ary", "a%0Db"], ids=["nul", "inner-nul", "cr"])
def test_schedule_search_with_control_characters_is_422(client, world, session, query) -> None:
    _connected_with_rotation(session, world)
    r = client.get(
        f"/v1/workspaces/{world.ws.id}/pagerduty/schedules?query={query}",
        headers=world.headers(world.member),
    )
    _refused(r, "query")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"schedule_id": "PS\\u00001"}', "control characters"),
        (b'{"schedule_id": "\\ud800"}', "valid string"),
        (b'{"schedule_id": "P\\tS1"}', "control characters"),
    ],
    ids=["nul", "lone-surrogate", "tab"],
)
def test_bind_with_control_characters_is_422(client, world, session, sent, raw, words) -> None:
    rotation = _connected_with_rotation(session, world)
    r = client.put(
        f"/v1/workspaces/{world.ws.id}/rotations/{rotation.id}/pagerduty-schedule",
        content=raw,
        headers={**world.headers(world.admin), "Content-Type": "application/json"},
    )
    _refused(r, "schedule_id", words)
    assert sent.calls == []
    _nothing_written(session)
    assert session.get(Rotation, rotation.id).mode == "manual"


@pytest.mark.parametrize("field", ["client_id", "client_secret"])
def test_oauth_start_with_control_characters_is_422(client, world, session, field) -> None:
    body = {"client_id": "cid", "client_secret": "secret", field: "ab\u0000cd"}
    r = client.post(
        f"/v1/workspaces/{world.ws.id}/pagerduty/oauth",
        json=body,
        headers=world.headers(world.admin),
    )
    _refused(r, field)
    _nothing_written(session)


def test_panel_bind_with_a_nul_is_422(client, world, session, sent) -> None:
    rotation = _connected_with_rotation(session, world)
    act_as(client, world.owner)
    r = client.post(
        f"/panel/rotations/{rotation.id}/bind",
        data={"schedule_id": "PS\x001", "csrf_token": csrf(client)},
    )
    _refused(r, "schedule_id")
    assert sent.calls == []
    session.expire_all()
    assert session.get(Rotation, rotation.id).mode == "manual"


def test_panel_strips_surrounding_whitespace_before_checking(client, world, session, sent) -> None:
    # A key pasted with a trailing tab is still a key (the service strips it).
    act_as(client, world.owner)
    r = client.post(
        "/panel/api-key",
        data={"api_key": "u+abcdefghijklmnopqrst\t", "csrf_token": csrf(client)},
    )
    assert r.status_code == 303
    assert sent.names() == ["pagerduty.validate_api_key"]


@pytest.mark.parametrize("value", ["²", "9" * 40, "-1"], ids=["superscript", "huge", "negative"])
def test_panel_ignores_a_nonsense_sync_requested(client, world, session, value) -> None:
    _connected_with_rotation(session, world)
    act_as(client, world.owner)
    page = client.get(f"/panel?sync_requested={value}")
    assert page.status_code == 200
    assert 'id="syncing"' not in page.text


def test_a_crafted_deeply_nested_flash_cookie_is_ignored(client, world) -> None:
    import base64

    from api_stub.panel import session as panel

    client.cookies.set(panel.FLASH_COOKIE, base64.urlsafe_b64encode(b"[" * 5000).decode())
    page = client.get("/panel")
    assert page.status_code == 200
    assert "Who are you?" in page.text

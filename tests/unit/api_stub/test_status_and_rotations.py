"""Status summary, schedules search, rotations, bind/unbind, disconnect, sync now, tasks."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from models import (
    AuditEvent,
    AuthMethod,
    ConnectionStatus,
    PagerDutyUser,
    Rotation,
    RotationOnDuty,
    SyncRun,
    TaskRecord,
    utcnow,
)
from tests.support import factories
from tests.support.api import mirror, url

# --- status -------------------------------------------------------------------------------------


def test_status_when_not_connected(client, world) -> None:
    r = client.get(url(world, "/pagerduty"), headers=world.headers(world.member))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "not_connected"
    assert body["connection_id"] is None
    assert body["linked_summary"] == "0 of 0 users linked to members"


def test_status_summary_counts_and_last_sync(client, world, session) -> None:
    conn = mirror(session, world)
    started = utcnow() - timedelta(minutes=5)
    session.add(
        SyncRun(
            connection_id=conn.id,
            generation=1,
            kind="scheduled",
            status="succeeded",
            started_at=started - timedelta(minutes=1),
            finished_at=started,
        )
    )
    session.add(
        SyncRun(
            connection_id=conn.id,
            generation=1,
            kind="manual",
            status="failed",
            started_at=started,
            finished_at=started + timedelta(seconds=2),
            duration_ms=2000,
            rows_created=4,
            rows_updated=1,
            rows_deleted=2,
            requests_made=7,
            error="PagerDuty was rate limiting us",
        )
    )
    session.commit()
    r = client.get(url(world, "/pagerduty"), headers=world.headers(world.member))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "connected"
    assert body["auth_method"] == "api_key"
    assert body["region"] == "us"
    assert body["account_subdomain"] == "acme"
    assert body["key_level"] == "account"
    assert body["connected_by"] == {
        "member_id": str(world.owner.id),
        "name": "Olive Owner",
        "email": "owner@acme.test",
    }
    assert body["user_count"] == 5
    assert body["schedule_count"] == 3
    assert (body["linked_users"], body["total_users"]) == (3, 5)
    assert body["linked_summary"] == "3 of 5 users linked to members"
    last = body["last_sync"]
    assert last["status"] == "failed"
    assert last["kind"] == "manual"
    assert (last["rows_created"], last["rows_updated"], last["rows_deleted"]) == (4, 1, 2)
    assert last["requests_made"] == 7
    assert last["error"] == "PagerDuty was rate limiting us"


def test_status_says_which_pagerduty_user_an_oauth_connection_acts_as(
    client, world, session
) -> None:
    conn = mirror(session, world)
    assert (
        client.get(url(world, "/pagerduty"), headers=world.headers(world.member)).json()[
            "acting_user"
        ]
        is None
    )  # an API key acts as no one in particular
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    conn.pagerduty_user_id = "PU2"
    conn.acting_user_name, conn.acting_user_email, conn.acting_user_role = (
        "Ada",
        "admin@acme.test",
        "user",
    )
    session.commit()
    body = client.get(url(world, "/pagerduty"), headers=world.headers(world.member)).json()
    assert body["acting_user"] == {
        "pagerduty_user_id": "PU2",
        "name": "Ada",
        "email": "admin@acme.test",
        "role": "user",
        "sees_everything": False,
    }


def test_status_shows_the_last_error_in_plain_words(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.VALIDATING)
    conn.transition(ConnectionStatus.INVALID, error="PagerDuty rejected this API key")
    session.commit()
    body = client.get(url(world, "/pagerduty"), headers=world.headers(world.admin)).json()
    assert body["status"] == "invalid"
    assert body["last_error"] == "PagerDuty rejected this API key"
    assert body["status_message"] == "PagerDuty rejected this API key"


def test_status_never_shows_another_workspaces_connection(client, world, session) -> None:
    factories.api_key_connection(session, world.other_ws)
    session.commit()
    body = client.get(url(world, "/pagerduty"), headers=world.headers(world.member)).json()
    assert body["status"] == "not_connected"


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_search_is_case_insensitive_with_member_counts(client, world, session) -> None:
    mirror(session, world)
    h = world.headers(world.member)
    r = client.get(url(world, "/pagerduty/schedules"), params={"query": "ON-CALL"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 2
    assert [(s["id"], s["name"], s["member_count"]) for s in body["items"]] == [
        ("PS1", "Primary On-Call", 3),
        ("PS2", "Secondary on-call", 1),
    ]
    # LIKE wildcards in the query are literal.
    r = client.get(url(world, "/pagerduty/schedules"), params={"query": "100%_"}, headers=h)
    assert [s["id"] for s in r.json()["items"]] == ["PS3"]
    r = client.get(url(world, "/pagerduty/schedules"), params={"query": "%"}, headers=h)
    assert [s["id"] for s in r.json()["items"]] == ["PS3"]


def test_schedule_search_paginates(client, world, session) -> None:
    mirror(session, world)
    h = world.headers(world.member)
    pages = [
        client.get(
            url(world, "/pagerduty/schedules"), params={"limit": 2, "offset": off}, headers=h
        ).json()
        for off in (0, 2)
    ]
    assert [p["total"] for p in pages] == [3, 3]
    names = [s["name"] for p in pages for s in p["items"]]
    assert names == ["Database 100%_team", "Primary On-Call", "Secondary on-call"]


def test_schedules_are_empty_when_not_connected(client, world) -> None:
    r = client.get(url(world, "/pagerduty/schedules"), headers=world.headers(world.member))
    assert r.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


# --- rotations ----------------------------------------------------------------------------------


def test_rotations_list_members_on_duty_and_unmatched(client, world, session) -> None:
    mirror(session, world)
    manual = factories.rotation(session, world.ws, [world.member, world.admin], name="Coffee")
    bound = factories.rotation(session, world.ws, [world.owner, world.admin], name="Ops")
    bound.mode = "pagerduty"
    bound.pagerduty_schedule_id = "PS1"
    bound.bound_at = utcnow()
    session.add(RotationOnDuty(rotation_id=bound.id, member_id=world.owner.id))
    session.add(RotationOnDuty(rotation_id=manual.id, member_id=world.member.id))
    factories.rotation(session, world.other_ws, name="Not yours")
    session.commit()

    r = client.get(url(world, "/rotations"), headers=world.headers(world.member))
    assert r.status_code == 200, r.text
    rotations = {x["name"]: x for x in r.json()["rotations"]}
    assert set(rotations) == {"Coffee", "Ops"}
    coffee, ops = rotations["Coffee"], rotations["Ops"]
    assert coffee["mode"] == "manual"
    assert coffee["schedule"] is None
    assert [m["email"] for m in coffee["members"]] == ["mo@acme.test", "admin@acme.test"]
    assert [m["name"] for m in coffee["on_duty"]] == ["Mo Member"]
    assert coffee["unmatched_on_call"] == []
    assert ops["mode"] == "pagerduty"
    assert ops["schedule"] == {"id": "PS1", "name": "Primary On-Call", "missing": False}
    assert [m["id"] for m in ops["members"]] == [str(world.owner.id), str(world.admin.id)]
    assert [m["email"] for m in ops["on_duty"]] == ["owner@acme.test"]
    assert ops["unmatched_on_call"] == [
        {
            "pagerduty_user_id": "PU4",
            "name": "Stranger One",
            "email": "s1@elsewhere.test",
            "active": True,
        },
        {
            "pagerduty_user_id": "PU5",
            "name": "Stranger Two",
            "email": "s2@elsewhere.test",
            "active": True,
        },
    ]


def test_bind_and_unbind(client, world, session, sent) -> None:
    conn = mirror(session, world)
    rot = factories.rotation(session, world.ws, [world.member], name="Ops")
    session.add(RotationOnDuty(rotation_id=rot.id, member_id=world.member.id))
    session.commit()
    path = url(world, f"/rotations/{rot.id}/pagerduty-schedule")

    r = client.put(path, json={"schedule_id": "PS2"}, headers=world.headers(world.admin))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["rotation"]["mode"] == "pagerduty"
    assert body["rotation"]["schedule"] == {
        "id": "PS2",
        "name": "Secondary on-call",
        "missing": False,
    }
    assert sent.calls[-1]["name"] == "pagerduty.sync_connection"
    assert sent.calls[-1]["kwargs"] == {"connection_id": str(conn.id), "kind": "binding"}
    assert session.get(TaskRecord, body["task_id"]).workspace_id == world.ws.id
    session.expire_all()
    stored = session.get(Rotation, rot.id)
    assert stored.pagerduty_schedule_id == "PS2"
    assert stored.bound_at is not None

    r = client.delete(path, headers=world.headers(world.admin))
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "manual"
    assert r.json()["schedule"] is None
    # Members and on-duty are kept.
    assert [m["email"] for m in r.json()["members"]] == ["mo@acme.test"]
    assert [m["email"] for m in r.json()["on_duty"]] == ["mo@acme.test"]
    # Unbinding again is a harmless no-op.
    assert client.delete(path, headers=world.headers(world.admin)).status_code == 200
    actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at)))
    assert actions == ["rotation.pagerduty.bind", "rotation.pagerduty.unbind"]


def test_bind_refusals(client, world, session, sent) -> None:
    rot = factories.rotation(session, world.ws, name="Ops")
    other_rot = factories.rotation(session, world.other_ws, name="Theirs")
    session.commit()
    path = url(world, f"/rotations/{rot.id}/pagerduty-schedule")
    h = world.headers(world.admin)
    # Not connected at all.
    r = client.put(path, json={"schedule_id": "PS1"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_connected")
    conn = mirror(session, world, status=ConnectionStatus.VALIDATING)
    r = client.put(path, json={"schedule_id": "PS1"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "connection_not_ready")
    conn.status = "connected"
    session.merge(conn)
    session.commit()
    r = client.put(path, json={"schedule_id": "PNOPE"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "schedule_not_found")
    r = client.put(
        url(world, f"/rotations/{other_rot.id}/pagerduty-schedule"),
        json={"schedule_id": "PS1"},
        headers=h,
    )
    assert (r.status_code, r.json()["error"]["code"]) == (404, "rotation_not_found")
    r = client.put(path, json={"schedule_id": "PS1"}, headers=world.headers(world.member))
    assert r.status_code == 403
    r = client.put(path, json={}, headers=h)
    assert r.status_code == 422
    assert sent.calls == []
    session.expire_all()
    assert session.get(Rotation, rot.id).mode == "manual"


# --- disconnect and sync ------------------------------------------------------------------------


def test_disconnect_twice_is_202_twice(client, world, session, sent) -> None:
    conn = mirror(session, world)
    for _ in range(2):
        r = client.delete(url(world, "/pagerduty"), headers=world.headers(world.owner))
        assert r.status_code == 202, r.text
        assert r.json()["connection"]["status"] == "disconnecting"
        assert r.json()["connection"]["id"] == str(conn.id)
    assert [c["name"] for c in sent.calls] == ["pagerduty.disconnect"] * 2
    assert sent.calls[0]["kwargs"] == {
        "connection_id": str(conn.id),
        "actor_member_id": str(world.owner.id),
    }
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TaskRecord)) == 2
    # Nothing else changed: the mirror is the task's job.
    assert session.scalar(select(func.count()).select_from(PagerDutyUser)) == 5
    status = client.get(url(world, "/pagerduty"), headers=world.headers(world.member)).json()
    assert status["status"] == "disconnecting"


def test_disconnect_without_connection_is_404(client, world, sent) -> None:
    r = client.delete(url(world, "/pagerduty"), headers=world.headers(world.admin))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_connected")
    assert sent.calls == []


def test_sync_now(client, world, session, sent) -> None:
    h = world.headers(world.admin)
    r = client.post(url(world, "/pagerduty/sync"), headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_connected")
    conn = mirror(session, world, status=ConnectionStatus.NEEDS_REAUTH)
    r = client.post(url(world, "/pagerduty/sync"), headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "connection_not_ready")
    assert sent.calls == []
    conn.status = "connected"
    session.merge(conn)
    session.commit()
    r = client.post(url(world, "/pagerduty/sync"), headers=h)
    assert r.status_code == 202, r.text
    assert sent.calls[-1]["kwargs"] == {"connection_id": str(conn.id), "kind": "manual"}
    assert sent.calls[-1]["task_id"] == r.json()["task_id"]


# --- tasks --------------------------------------------------------------------------------------


def test_tasks_endpoint_shows_only_own_workspace_tasks(client, world, session, sent) -> None:
    mirror(session, world)
    task_id = client.post(url(world, "/pagerduty/sync"), headers=world.headers(world.admin)).json()[
        "task_id"
    ]
    r = client.get(f"/v1/tasks/{task_id}", headers=world.headers(world.member))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"task_id", "task_name", "state", "created_at"}
    assert body["task_name"] == "pagerduty.sync_connection"
    assert body["state"] == "PENDING"  # nobody ran it (publishing is captured in these tests)
    r = client.get(f"/v1/tasks/{task_id}", headers=world.headers(world.other_admin))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "task_not_found")
    r = client.get("/v1/tasks/not-a-task", headers=world.headers(world.member))
    assert r.status_code == 404
    assert client.get(f"/v1/tasks/{task_id}").status_code == 401


def test_tasks_endpoint_reports_the_backend_state(client, world, session, sent) -> None:
    from workers.tasking.app import app

    mirror(session, world)
    task_id = client.post(url(world, "/pagerduty/sync"), headers=world.headers(world.admin)).json()[
        "task_id"
    ]
    app.backend.store_result(task_id, {"status": "ok"}, "SUCCESS")
    try:
        body = client.get(f"/v1/tasks/{task_id}", headers=world.headers(world.member)).json()
        assert body["state"] == "SUCCESS"
        assert "result" not in body
    finally:
        app.backend.forget(task_id)


def test_every_write_is_audited(client, world, session, sent) -> None:
    mirror(session, world)
    rot = factories.rotation(session, world.ws, name="Ops")
    session.commit()
    h = world.headers(world.admin)
    client.post(url(world, "/pagerduty/sync"), headers=h)
    client.put(
        url(world, f"/rotations/{rot.id}/pagerduty-schedule"),
        json={"schedule_id": "PS1"},
        headers=h,
    )
    client.put(
        url(world, "/pagerduty/api-key"), json={"api_key": "u+abcdefghijklmnopqrst"}, headers=h
    )
    client.post(
        url(world, "/pagerduty/oauth"), json={"client_id": "c", "client_secret": "s"}, headers=h
    )
    client.delete(url(world, "/pagerduty"), headers=h)
    session.expire_all()
    events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.created_at)))
    assert [e.action for e in events] == [
        "pagerduty.sync.requested",
        "rotation.pagerduty.bind",
        "pagerduty.connect.api_key",
        "pagerduty.connect.oauth_started",
        "pagerduty.disconnect.requested",
    ]
    assert {e.actor_member_id for e in events} == {world.admin.id}
    assert {e.workspace_id for e in events} == {world.ws.id}

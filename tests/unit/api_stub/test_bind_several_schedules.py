"""PUT .../rotations/{R}/pagerduty-schedule with ``schedule_ids``: a rotation follows up to 10
schedules of its connection (issue 22 item 3); ``schedule_id`` stays valid."""

from __future__ import annotations

from sqlalchemy import select

from models import AuditEvent, Rotation, RotationSchedule
from tests.support import factories
from tests.support.api import mirror, mirror_schedule, url
from tests.support.outbox import committed_events


def _followed(session, rotation_id) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(RotationSchedule.schedule_pagerduty_id)
            .where(RotationSchedule.rotation_id == rotation_id)
            .order_by(RotationSchedule.position)
        )
    )


def test_bind_to_two_schedules_then_rebind_to_one(client, world, session, sent) -> None:
    conn = mirror(session, world)
    rot = factories.rotation(session, world.ws, name="Ops")
    session.commit()
    path = url(world, f"/rotations/{rot.id}/pagerduty-schedule")
    h = world.headers(world.admin)

    r = client.put(path, json={"schedule_ids": ["PS2", "PS1"]}, headers=h)
    assert r.status_code == 202, r.text
    view = r.json()["rotation"]
    assert view["mode"] == "pagerduty"
    assert view["schedules"] == [
        {"id": "PS2", "name": "Secondary on-call", "missing": False},
        {"id": "PS1", "name": "Primary On-Call", "missing": False},
    ]
    assert view["schedule"] == view["schedules"][0]  # the first, as before
    # On call for PS1 with no member: the view's unmatched people come from either schedule.
    assert {u["pagerduty_user_id"] for u in view["unmatched_on_call"]} == {"PU4", "PU5"}
    assert _followed(session, rot.id) == ["PS2", "PS1"]
    assert session.get(Rotation, rot.id).pagerduty_schedule_id == "PS2"
    assert sent.calls[-1]["kwargs"] == {"connection_id": str(conn.id), "kind": "binding"}
    (bound,) = [e for e in committed_events() if e["type"] == "rotation.bound"]
    assert bound["data"]["schedule_id"] == "PS2"
    assert bound["data"]["schedule_ids"] == ["PS2", "PS1"]
    assert bound["data"]["previous_schedule_ids"] == []

    # Today's single-schedule form replaces the set.
    r = client.put(path, json={"schedule_id": "PS3"}, headers=h)
    assert r.status_code == 202, r.text
    assert [s["id"] for s in r.json()["rotation"]["schedules"]] == ["PS3"]
    assert _followed(session, rot.id) == ["PS3"]
    rebound = [e for e in committed_events() if e["type"] == "rotation.bound"][-1]
    assert rebound["data"]["previous_schedule_ids"] == ["PS2", "PS1"]
    assert rebound["data"]["schedule_ids"] == ["PS3"]

    r = client.put(path, json={"schedule_ids": ["PS1", "PS3"]}, headers=h)
    assert r.status_code == 202, r.text
    r = client.delete(path, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["schedule"], r.json()["schedules"]) == (None, [])
    assert _followed(session, rot.id) == []
    (manual,) = [e for e in committed_events() if e["type"] == "rotation.made_manual"]
    assert manual["data"]["previous_schedule_ids"] == ["PS1", "PS3"]
    assert manual["data"]["reason"] == "unbound"


def test_schedule_ids_refusals_name_what_is_wrong(client, world, session, sent) -> None:
    conn = mirror(session, world)
    for n in range(4, 12):
        mirror_schedule(session, conn, f"PS{n}", f"Schedule {n}")
    rot = factories.rotation(session, world.ws, name="Ops")
    session.commit()
    path = url(world, f"/rotations/{rot.id}/pagerduty-schedule")
    h = world.headers(world.admin)

    def put(body: dict[str, object]) -> tuple[int, str, str]:
        r = client.put(path, json=body, headers=h)
        error = r.json()["error"]
        return r.status_code, error["code"], error["message"]

    eleven = [f"PS{n}" for n in range(1, 12)]
    status, code, message = put({"schedule_ids": eleven})
    assert (status, code) == (422, "too_many_schedules")
    assert "at most 10" in message
    status, code, message = put({"schedule_ids": ["PS1", "PS2", "PS1"]})
    assert (status, code) == (422, "duplicate_schedule_ids")
    assert "PS1" in message
    assert "PS2" not in message
    status, code, message = put({"schedule_ids": ["PS1", "PNOPE", "PGONE"]})
    assert (status, code) == (404, "schedule_not_found")
    assert "PNOPE, PGONE" in message
    assert "PS1" not in message
    status, code, _ = put({"schedule_id": "PS1", "schedule_ids": ["PS2"]})
    assert (status, code) == (400, "schedule_id_or_schedule_ids")
    status, code, _ = put({"schedule_ids": []})
    assert (status, code) == (422, "invalid_schedule_id")
    status, code, _ = put({"schedule_ids": ["PS1", " "]})
    assert (status, code) == (422, "invalid_schedule_id")

    # Nothing was bound, queued or audited by any of them.
    assert sent.calls == []
    session.expire_all()
    assert session.get(Rotation, rot.id).mode == "manual"
    assert _followed(session, rot.id) == []
    assert session.scalars(select(AuditEvent.action)).all() == []

    # Ten is allowed.
    r = client.put(path, json={"schedule_ids": eleven[:10]}, headers=h)
    assert r.status_code == 202, r.text
    assert _followed(session, rot.id) == eleven[:10]

"""The audit trail for workspace admins: GET /v1/workspaces/{W}/audit."""

from __future__ import annotations

from datetime import timedelta

from models import AuditEvent, utcnow


def test_admins_read_their_workspace_trail_newest_first_and_page_back(
    client, world, session, sent
) -> None:
    url = f"/v1/workspaces/{world.ws.id}/pagerduty"
    assert (
        client.put(
            f"{url}/api-key",
            json={"api_key": "u+abcdefghijklmnopqrst"},
            headers=world.headers(world.owner),
        ).status_code
        == 202
    )
    now = utcnow()
    for n in range(5):
        session.add(
            AuditEvent(
                workspace_id=world.ws.id,
                action="rotation.pagerduty.bind",
                actor="system",
                details={"n": n},
                created_at=now - timedelta(hours=n + 1),
            )
        )
    session.add(AuditEvent(workspace_id=world.other_ws.id, action="pagerduty.connected"))
    session.commit()

    r = client.get(
        f"/v1/workspaces/{world.ws.id}/audit?limit=3", headers=world.headers(world.admin)
    )
    assert r.status_code == 200, r.text
    page = r.json()
    first = page["events"][0]
    assert first["action"] == "pagerduty.connect.api_key"
    assert (first["actor"], first["actor_name"], first["actor_email"]) == (
        "member",
        "Olive Owner",
        "owner@acme.test",
    )
    assert first["actor_member_id"] == str(world.owner.id)
    assert "u+abcdefghijklmnopqrst" not in r.text  # details never carry the key
    assert [e["details"].get("n") for e in page["events"]] == [None, 0, 1]
    older = client.get(
        f"/v1/workspaces/{world.ws.id}/audit",
        params={"limit": 3, "before": page["next_before"]},
        headers=world.headers(world.admin),
    ).json()
    assert [e["details"]["n"] for e in older["events"]] == [2, 3, 4]
    assert older["next_before"] is not None  # a full page; the next one is empty
    only = client.get(
        f"/v1/workspaces/{world.ws.id}/audit",
        params={"action": "pagerduty."},
        headers=world.headers(world.owner),
    ).json()
    assert [e["action"] for e in only["events"]] == ["pagerduty.connect.api_key"]


def test_members_and_other_workspaces_do_not_read_it(client, world, sent) -> None:
    url = f"/v1/workspaces/{world.ws.id}/audit"
    assert client.get(url, headers=world.headers(world.member)).status_code == 403
    assert client.get(url, headers=world.headers(world.other_admin)).status_code == 403
    assert client.get(url).status_code == 401
    bad = client.get(url, params={"limit": 0}, headers=world.headers(world.admin))
    assert bad.status_code == 422

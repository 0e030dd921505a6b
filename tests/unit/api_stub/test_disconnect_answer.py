"""What the admin reads when disconnecting: the rotations that become Manual, and how to revoke
the credential in PagerDuty (PagerDuty has no API for it)."""

from __future__ import annotations

from models import RotationMode, utcnow
from tests.support import factories
from tests.support.api import mirror, url


def _bind(session, world, name: str, schedule_id: str) -> None:  # type: ignore[no-untyped-def]
    rot = factories.rotation(session, world.ws, name=name)
    rot.mode, rot.pagerduty_schedule_id, rot.bound_at = (
        RotationMode.PAGERDUTY,
        schedule_id,
        utcnow(),
    )
    session.commit()


def test_api_key_disconnect_lists_the_rotations_and_says_where_to_delete_the_key(
    client, world, session, sent
) -> None:
    mirror(session, world)
    _bind(session, world, "Ops", "PS1")
    _bind(session, world, "db on-call", "PS3")
    factories.rotation(session, world.ws, name="Coffee")  # manual: not listed
    session.commit()

    r = client.delete(url(world, "/pagerduty"), headers=world.headers(world.admin))

    assert r.status_code == 202, r.text
    body = r.json()
    assert [x["name"] for x in body["rotations_to_manual"]] == ["db on-call", "Ops"]
    assert "deleted its copy of the API key" in body["revoke_in_pagerduty"]
    assert (
        "https://acme.pagerduty.com > Integrations > API Access Keys"
        in (body["revoke_in_pagerduty"])
    )


def test_oauth_disconnect_says_how_to_revoke_all_tokens(client, world, session, sent) -> None:
    conn = mirror(session, world)
    conn.auth_method = "oauth"
    session.merge(conn)
    session.commit()

    body = client.delete(url(world, "/pagerduty"), headers=world.headers(world.owner)).json()

    assert body["rotations_to_manual"] == []
    words = body["revoke_in_pagerduty"]
    assert "no API to revoke them" in words
    assert "App Registration" in words
    assert "Revoke All Tokens" in words
    assert "within 30 days" in words


def test_status_shows_the_notice(client, world, session) -> None:
    conn = mirror(session, world)
    conn.notice = "This API key belongs to a PagerDuty account in the EU region."
    session.merge(conn)
    session.commit()
    status = client.get(url(world, "/pagerduty"), headers=world.headers(world.member)).json()
    assert status["notice"] == "This API key belongs to a PagerDuty account in the EU region."
    assert status["inactive_users"] == 0

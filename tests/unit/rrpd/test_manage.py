"""``rrpd workspace|member|rotation|token``: local administration commands."""

from __future__ import annotations

import uuid

from click.testing import CliRunner
from sqlalchemy import select

from api_stub.auth import verify_token
from models import Member, Rotation, Workspace
from rrpd.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_create_workspace_member_rotation_and_token(db, session) -> None:
    r = run("workspace", "create", "Acme")
    assert r.exit_code == 0, r.output
    ws_id = uuid.UUID(r.output.strip())
    assert session.get(Workspace, ws_id).name == "Acme"

    r = run("member", "add", str(ws_id), "Ada@Acme.test", "--role", "admin", "--name", "Ada")
    assert r.exit_code == 0, r.output
    ada = session.get(Member, uuid.UUID(r.output.strip()))
    assert (ada.display_name, ada.role, ada.email_key) == ("Ada", "admin", "ada@acme.test")
    r = run("member", "add", str(ws_id), "bob@acme.test", "--role", "member")
    assert r.exit_code == 0, r.output
    bob_id = uuid.UUID(r.output.strip())
    assert session.get(Member, bob_id).display_name == "bob"

    r = run(
        "rotation",
        "create",
        str(ws_id),
        "Ops",
        "--member",
        "bob@acme.test",
        "--member",
        "ada@acme.test",
    )
    assert r.exit_code == 0, r.output
    rot = session.get(Rotation, uuid.UUID(r.output.strip()))
    assert [m.member_id for m in rot.members] == [bob_id, ada.id]
    assert rot.mode == "manual"

    r = run("token", str(ws_id), "ADA@acme.test", "--ttl", "120")
    assert r.exit_code == 0, r.output
    workspace_id, member_id, role = verify_token(r.output.strip())
    assert (workspace_id, member_id, role.value) == (ws_id, ada.id, "admin")


def test_clear_errors(db, session) -> None:
    ws_id = run("workspace", "create", "Acme").output.strip()
    unknown = str(uuid.uuid4())

    r = run("member", "add", unknown, "a@b.test", "--role", "admin")
    assert r.exit_code != 0
    assert f"unknown workspace {unknown}" in r.output
    r = run("member", "add", "not-an-id", "a@b.test", "--role", "admin")
    assert r.exit_code != 0
    assert "unknown workspace 'not-an-id'" in r.output
    r = run("member", "add", ws_id, "a@b.test", "--role", "boss")
    assert r.exit_code != 0
    assert "boss" in r.output
    r = run("member", "add", ws_id, "not-an-email", "--role", "admin")
    assert r.exit_code != 0
    assert "not an email address" in r.output
    assert run("member", "add", ws_id, "a@b.test", "--role", "admin").exit_code == 0
    r = run("member", "add", ws_id, "A@B.test", "--role", "member")
    assert r.exit_code != 0
    assert "already has a member" in r.output

    r = run("rotation", "create", ws_id, "Ops", "--member", "ghost@b.test")
    assert r.exit_code != 0
    assert "no member with email 'ghost@b.test'" in r.output
    assert run("rotation", "create", ws_id, "Ops").exit_code == 0
    r = run("rotation", "create", ws_id, "Ops")
    assert r.exit_code != 0
    assert "already has a rotation named 'Ops'" in r.output

    r = run("token", ws_id, "ghost@b.test")
    assert r.exit_code != 0
    assert "no member with email" in r.output
    r = run("token", unknown, "a@b.test")
    assert r.exit_code != 0
    assert "unknown workspace" in r.output
    session.expire_all()
    assert len(list(session.scalars(select(Member)))) == 1


def test_production_refuses_to_mint_tokens_or_add_members(db, session, monkeypatch) -> None:
    from workers.core.settings import reset_settings_cache

    ws_id = run("workspace", "create", "Acme").output.strip()
    assert run("member", "add", ws_id, "ada@acme.test", "--role", "admin").exit_code == 0
    monkeypatch.setenv("RRPD_ENV", "production")
    reset_settings_cache()
    try:
        r = run("token", ws_id, "ada@acme.test")
        assert r.exit_code == 1
        assert "`rrpd token` is disabled in production" in r.output
        assert "Round Robin app" in r.output
        assert "eyJ" not in r.output  # no JWT printed
        r = run("member", "add", ws_id, "mallory@acme.test", "--role", "primary_owner")
        assert r.exit_code == 1
        assert "`rrpd member add` is disabled in production" in r.output
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    session.expire_all()
    assert [m.email for m in session.scalars(select(Member))] == ["ada@acme.test"]


def test_workspace_list_shows_every_workspace_with_members_and_pagerduty(db, session) -> None:
    import json

    from models import ConnectionStatus
    from tests.support import factories

    empty = run("workspace", "list").output.strip()
    assert empty == "no workspace yet (rrpd workspace create NAME)"
    acme = factories.workspace(session, "Acme")
    for email in ("a@acme.test", "b@acme.test"):
        factories.member(session, acme, email)
    factories.api_key_connection(session, acme, status=ConnectionStatus.DISCONNECTED)
    factories.api_key_connection(session, acme, status=ConnectionStatus.NEEDS_REAUTH)
    factories.rotation(session, acme, name="Ops")
    beta = factories.workspace(session, "Beta")
    session.commit()

    r = run("workspace", "list")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["WORKSPACE", "NAME", "MEMBERS", "ROTATIONS", "PAGERDUTY"]
    assert lines[1].split() == [str(acme.id), "Acme", "2", "1", "needs_reauth"]
    assert lines[2].split() == [str(beta.id), "Beta", "0", "0", "not", "connected"]
    assert lines[3] == "2 workspace(s)"
    listed = json.loads(run("workspace", "list", "--json").output)
    assert listed[0] == {
        "workspace_id": str(acme.id),
        "name": "Acme",
        "members": 2,
        "rotations": 1,
        "pagerduty": "needs_reauth",
    }

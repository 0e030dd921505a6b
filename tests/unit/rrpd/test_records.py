"""``rrpd audit``, ``rrpd outbox status`` / ``replay`` and ``rrpd events replay`` / ``tail``."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from models import AuditEvent, Role, utcnow
from rrpd.cli import cli
from tests.support import factories
from tests.support.outbox import committed_events, paused_outbox
from workers import events
from workers.core.db import transaction
from workers.core.redis import client
from workers.core.settings import get_settings
from workers.outbox import relay

# The outbox relay and retention read and write here: on both databases.
pytestmark = pytest.mark.both_databases


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_audit_prints_the_trail_newest_first(session: Session) -> None:
    ws = factories.workspace(session)
    ada = factories.member(session, ws, "ada@acme.test", Role.ADMIN, display_name="Ada")
    now = utcnow()
    session.add(
        AuditEvent(
            workspace_id=ws.id,
            action="pagerduty.connect.api_key",
            actor_member_id=ada.id,
            details={"region": "us"},
            created_at=now - timedelta(hours=2),
        )
    )
    session.add(
        AuditEvent(
            workspace_id=ws.id,
            action="pagerduty.disconnected",
            actor="system",
            details={"rotations_made_manual": []},
            created_at=now - timedelta(hours=1),
        )
    )
    session.commit()

    result = _run("audit", str(ws.id))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "pagerduty.disconnected" in lines[0]
    assert "system" in lines[0]
    assert "pagerduty.connect.api_key" in lines[1]
    assert "Ada <ada@acme.test>" in lines[1]
    assert "region=us" in lines[1]

    as_json = _run("audit", str(ws.id), "--json", "--before", "90m")
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["action"] for r in rows] == ["pagerduty.connect.api_key"]
    assert rows[0]["actor_member_id"] == str(ada.id)

    assert "unknown workspace" in _run("audit", str(uuid.uuid4())).output
    assert _run("audit", str(ws.id), "--before", "yesterday").exit_code == 2


def test_outbox_status_and_events_replay(session: Session, redis_client) -> None:
    ws = factories.workspace(session)
    session.commit()
    rotation_id = uuid.uuid4()
    with paused_outbox():
        with transaction() as tx:
            for n in range(3):
                events.rotation_bound(
                    tx,
                    workspace_id=ws.id,
                    rotation_id=rotation_id,
                    connection_id=rotation_id,
                    schedule_id=f"PS{n}",
                    previous_schedule_id=None,
                )
        status = json.loads(_run("outbox", "status", "--json").output)
        assert status["events"]["unpublished"] == 3
        assert status["events"]["oldest_seconds"] >= 0
    while relay.relay_lane("events").busy:
        pass
    assert json.loads(_run("outbox", "status", "--json").output)["events"]["unpublished"] == 0

    stream = get_settings().effective_events_stream
    ids = [e["id"] for e in committed_events()]

    def ours() -> list[str]:
        found = [json.loads(f[b"event"])["id"] for _i, f in client().xrange(stream)]
        return [i for i in found if i in ids]

    assert ours() == ids
    result = _run("events", "replay", "--since", "10m", "--workspace", str(ws.id))
    assert result.exit_code == 0, result.output
    assert "published again: 3 event(s), 0 task(s)" in result.output
    assert ours() == ids + ids  # the same ids, in the same order
    result = _run("events", "replay", "--since", "10m", "--workspace", ws.name)
    assert result.exit_code == 0, result.output
    assert ours() == ids + ids + ids
    result = _run("events", "replay", "--since", "10m", "--workspace", "Nobody Inc")
    assert result.exit_code == 1
    assert "unknown workspace 'Nobody Inc'" in result.output

    tail = _run("events", "tail", "--count", "3")
    assert [json.loads(line)["id"] for line in tail.output.splitlines()] == ids

"""The audit actions: one enum in the code (``models.AuditAction``, what each records in
``workers.core.audit.ACTIONS``), the same in the docs, stored as the same strings as before."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from models import AuditAction
from workers.core.audit import ACTIONS, audit

ROOT = Path(__file__).resolve().parents[4]


def test_the_api_docs_list_every_audit_action_and_no_other() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    table = doc[doc.index("| action | what it records |") :].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| (.+) \|$", table, flags=re.MULTILINE))
    assert rows == ACTIONS, "docs/api.md's audit table differs from workers.core.audit.ACTIONS"


def test_every_audit_action_the_docs_name_is_written_by_the_code() -> None:
    named = {
        action
        for path in sorted((ROOT / "docs").glob("*.md"))
        for action in re.findall(r"[Aa]udit:? `([a-z_.]+)`", path.read_text())
    }
    assert named
    assert named <= set(ACTIONS), sorted(named - set(ACTIONS))


def test_an_action_not_in_the_set_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown audit action 'pagerduty\.conected'"):
        audit(None, uuid.uuid4(), "pagerduty.conected")  # type: ignore[arg-type]


def test_an_actions_plain_string_is_refused_too() -> None:
    """Enum members only: the string of an existing action is how a renamed one would slip by."""
    with pytest.raises(TypeError, match=r"'pagerduty\.sync\.requested' must be passed as its"):
        audit(None, uuid.uuid4(), "pagerduty.sync.requested")  # type: ignore[arg-type]


def test_every_action_in_the_set_is_written_somewhere() -> None:
    from models import PendingStatus

    # Where actions are written: anywhere but the set itself.
    writers = [p for p in sorted((ROOT / "workers").rglob("*.py")) if p.name != "audit.py"]
    source = "\n".join(p.read_text() for p in writers)
    # By member, never by string (``audit`` refuses strings).
    written = {a for a in ACTIONS if f"AuditAction.{a.name}" in source}
    unwritten = [a for a in ACTIONS if a not in written]
    assert not unwritten, unwritten
    strings = [a.value for a in ACTIONS if f'"{a.value}"' in source]
    assert not strings, strings
    # workers.connections.pending.record_ended writes one action per way a pending check ends.
    from workers.connections.pending import ENDED_ACTIONS

    assert set(ENDED_ACTIONS) == set(PendingStatus) - {PendingStatus.CHECKING}


def test_every_action_is_an_enum_member_with_a_meaning() -> None:
    assert list(ACTIONS) == list(AuditAction)
    assert all(ACTIONS[a] for a in AuditAction)


@pytest.mark.both_databases
def test_an_action_is_stored_as_its_old_string_and_read_back_as_the_enum(session) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from tests.support import factories
    from workers.core.audit import audit_trail

    ws = factories.workspace(session)
    audit(session, ws.id, AuditAction.SYNC_REQUESTED)
    audit(session, ws.id, AuditAction.DISCONNECT_REQUESTED)
    session.commit()
    stored = session.execute(
        text("SELECT action FROM audit_events WHERE workspace_id = :w ORDER BY action"),
        {"w": ws.id if session.bind.dialect.name == "postgresql" else ws.id.hex},
    ).scalars()
    assert list(stored) == ["pagerduty.disconnect.requested", "pagerduty.sync.requested"]
    actions = [e["action"] for e in audit_trail(session, ws.id, action="pagerduty.sync")]
    assert actions == [AuditAction.SYNC_REQUESTED]
    assert isinstance(actions[0], AuditAction)

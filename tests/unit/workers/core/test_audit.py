"""The audit actions: one set in the code (``workers.core.audit.ACTIONS``), the same in the docs."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

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


def test_every_action_in_the_set_is_written_somewhere() -> None:
    from models import PendingStatus

    # Where actions are written: anywhere but the set itself.
    writers = [p for p in sorted((ROOT / "workers").rglob("*.py")) if p.name != "audit.py"]
    source = "\n".join(p.read_text() for p in writers)
    # workers.connections.pending.record_ended writes one action per way a pending check ends.
    ended = {f"pagerduty.pending.{s.value}" for s in PendingStatus if s != PendingStatus.CHECKING}
    assert 'f"pagerduty.pending.{status.value}"' in source
    unwritten = [a for a in ACTIONS if f'"{a}"' not in source and a not in ended]
    assert not unwritten, unwritten

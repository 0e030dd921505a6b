"""``rrpd status`` shows each bound rotation's next handoff."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from models import utcnow
from rrpd.cli import cli
from tests.support.handoffs import arrange, snapshot, sync

pytestmark = [pytest.mark.postgres_only, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)


def test_rrpd_status_shows_each_bound_rotations_next_handoff(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]))
    out = CliRunner().invoke(cli, ["status", str(a.workspace_id)])
    assert out.exit_code == 0, out.output
    assert f"next handoff  Primary: Bob from {(T + 10 * M):%H:%M} UTC" in out.output
    as_json = json.loads(CliRunner().invoke(cli, ["status", str(a.workspace_id), "--json"]).output)
    (item,) = as_json["next_handoffs"]
    assert item["rotation"] == "Primary"
    assert item["next_handoff"]["text"] == f"Bob from {(T + 10 * M):%H:%M} UTC"

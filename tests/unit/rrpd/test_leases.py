"""``rrpd sync-locks`` shows who holds a sync lease and until when."""

from __future__ import annotations

import json
import os
import uuid

from click.testing import CliRunner

from rrpd.cli import cli
from workers.core import locks


def test_sync_locks_lists_a_held_lease_then_none(redis_client: object) -> None:
    cid = str(uuid.uuid4())
    runner = CliRunner()
    with locks.hold_lease(f"sync:{cid}", 15) as lease:
        assert lease is not None
        out = runner.invoke(cli, ["sync-locks"])
        assert out.exit_code == 0, out.output
        assert cid in out.output
        assert "sync running since" in out.output
        assert f":{os.getpid()}" in out.output
        assert "lease until" in out.output
        rows = json.loads(runner.invoke(cli, ["sync-locks", "--json"]).output)
        mine = [row for row in rows if row["connection_id"] == cid]
        assert len(mine) == 1
        assert mine[0]["holder"].endswith(f":{os.getpid()}")
    rows = json.loads(runner.invoke(cli, ["sync-locks", "--json"]).output)
    assert all(row["connection_id"] != cid for row in rows)

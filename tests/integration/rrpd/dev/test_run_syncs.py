"""``rrpd run`` is the whole system: on its embedded SQLite, beat's fan-out syncs a connected
workspace every interval, with nobody pressing "Sync now" (it used to fail every round there:
the fan-out's SQL was PostgreSQL's alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from models import PagerDutyConnection, SyncRun
from tests.support.processes import ROOT, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.clock]

INTERVAL = 3  # seconds: RRPD_SYNC_INTERVAL_SECONDS for this stack


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``rrpd run`` on free ports, a SQLite file and a Redis prefix of its own."""
    from workers.core.db import dispose_engines
    from workers.core.settings import reset_settings_cache

    api_port, sim_port, flower_port = free_ports(3)
    env = {
        "RRPD_ENV": "local",
        "RRPD_VAR_DIR": str(tmp_path),
        "RRPD_DATABASE_URL": f"sqlite:///{tmp_path / 'rrpd.sqlite3'}",
        "RRPD_REDIS_KEY_PREFIX": f"rrpd-run-{uuid.uuid4().hex[:8]}",
        "RRPD_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "RRPD_SYNC_INTERVAL_SECONDS": str(INTERVAL),
        "RRPD_SYNC_JITTER_SECONDS": "0",
    }
    # This process plays the admin's browser: its token must be signed with the stack's
    # secret and the seed must land in the stack's database.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RRPD_REDBEAT_URL", raising=False)
    monkeypatch.delenv("RRPD_APP_INTEGRATIONS_URL", raising=False)
    reset_settings_cache()
    argv = [sys.executable, "-m", "rrpd", "run", "--api-port", str(api_port)]
    argv += ["--sim-port", str(sim_port), "--flower-port", str(flower_port)]
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            env=dict(os.environ),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield {"api": api_url, "sim": sim_url, "db": env["RRPD_DATABASE_URL"], "log": log_path}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a person stops it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        dispose_engines()
    reset_settings_cache()


def test_rrpd_run_syncs_a_connected_workspace_every_interval(stack: dict[str, Any]) -> None:
    from rrpd.dev.demo import Demo

    demo = Demo(stack["api"], stack["sim"], timeout=60, out=lambda _line: None)
    demo.prepare()
    demo.connect_api_key()  # validating -> connected, as the help article's walkthrough

    engine = create_engine(stack["db"])

    def scheduled_checks() -> tuple[set[datetime], list[SyncRun]]:
        """When scheduled checks started: the recorded runs, and the quiet ones (a quiet check
        records no run; the connection row keeps its last check), plus any run that failed."""
        with Session(engine) as s:
            runs = list(s.scalars(select(SyncRun).where(SyncRun.kind == "scheduled")))
            seen = {r.started_at for r in runs if r.status == "succeeded"}
            seen |= {t for t in s.scalars(select(PagerDutyConnection.last_checked_at)) if t}
            return seen, [r for r in runs if r.status != "succeeded"]

    connected_at = time.monotonic()
    checks: set[datetime] = set()
    failed: list[SyncRun] = []
    # The first round after the connect, then one per interval: two scheduled checks within a
    # few intervals (beat's first tick included), each one a success.
    while len(_distinct(checks)) < 2 and time.monotonic() - connected_at < 10 * INTERVAL:
        time.sleep(0.5)
        seen, failed = scheduled_checks()
        checks |= seen
    log_tail = stack["log"].read_text(errors="replace")[-4000:]
    assert len(_distinct(checks)) >= 2, f"no scheduled syncs on SQLite:\n{log_tail}"
    assert not failed, [(r.status, r.error) for r in failed]
    first, second = _distinct(checks)[:2]
    gap = (second - first).total_seconds()
    assert INTERVAL - 1 <= gap <= 2 * INTERVAL + 1, gap
    with Session(engine) as s:
        conn = s.scalars(select(PagerDutyConnection)).one()
        assert conn.next_sync_at is not None  # `rrpd status` shows when the next one is due
    # What the panel and the API report: the last sync is a scheduled one, and it succeeded.
    status = demo.status()
    assert status["last_sync"]["kind"] == "scheduled"
    assert status["last_sync"]["status"] == "succeeded"
    # No round failed: the fan-out's SQL runs on SQLite.
    assert "make_interval" not in log_tail
    assert "database unavailable" not in stack["log"].read_text(errors="replace")
    engine.dispose()


def _distinct(instants: set[datetime]) -> list[datetime]:
    """One instant per check: a check that applied a change leaves its run's start and, moments
    later, the row's last_checked_at, so instants under a second apart are one check."""
    out: list[datetime] = []
    for t in sorted(instants):
        if not out or (t - out[-1]).total_seconds() >= 1:
            out.append(t)
    return out

"""``rrpd demo`` for real: it starts its own stack (``rrpd run``: simulator, API, workers, beat,
Flower), runs the three walkthroughs, and stops everything; and the demo seed it relies on."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from models import Member, Rotation, Workspace
from rrpd.dev.seed import DEMO_BINDINGS, MANUAL_ONLY, MEMBERS, seed_demo
from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# A pinned instant for the scenario: 13:00 UTC on a day whose afternoon cover of Follow-the-Sun
# is Carol's (it alternates with a contractor who is no member), so the demo's words are known.
CAROLS_AFTERNOON = "2026-12-07T13:00:00Z"


def test_demo_runs_the_three_walkthroughs_on_a_stack_it_starts() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rrpd",
            "demo",
            "--start",
            "--timeout",
            "90",
            "--at",
            CAROLS_AFTERNOON,
        ],
        check=False,
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for step in ("0", "1.1", "1.2", "1.3", "1.4", "1.5", "2.1", "2.2", "3.1"):
        assert re.search(rf"\[ok\]\s+{re.escape(step)} ", out), f"step {step}:\n{out}"
    assert "[FAIL]" not in out
    assert "rrpd demo: all 9 steps passed" in out
    assert "Rotations follow who is on call" in out
    assert "clock: now is 2026-12-07T13:00:00+00:00 (--at)" in out
    # the v3 schedule: the around-the-clock pair and the afternoon cover, all on call at once
    assert "Follow-the-Sun: 3 members, on duty Carol, Erin, Frank;" in out
    assert "after Sync now the Primary rotation has" in out
    assert "/panel?pagerduty=connecting" in out
    assert "all 4 rotations are Manual" in out
    assert "stack stopped (exit 0)" in out
    # Nothing of the stack is left: its API and simulator ports are closed.
    ports = re.search(
        r"API http://127\.0\.0\.1:(\d+), PagerDuty simulator http://127\.0\.0\.1:(\d+)", out
    )
    assert ports, out
    assert not _listening(int(ports.group(1)))
    assert not _listening(int(ports.group(2)))


def test_demo_fails_clearly_when_there_is_no_stack(db: str) -> None:
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rrpd",
            "demo",
            "--api-url",
            f"http://127.0.0.1:{port}",
            "--sim-url",
            f"http://127.0.0.1:{port}",
        ],
        check=False,
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] 0 Set up" in proc.stdout
    assert "rrpd demo: FAILED at 0 Set up" in proc.stdout


def test_demo_seed_is_idempotent_and_matches_the_demo_scenario(session) -> None:
    first = seed_demo(session)
    session.commit()
    assert len(first.created) == 1 + len(MEMBERS) + 4
    again = seed_demo(session)
    session.commit()
    assert again.created == []
    assert again.workspace_id == first.workspace_id
    assert again.members == first.members
    assert again.rotations == first.rotations
    assert session.scalar(select(func.count()).select_from(Workspace)) == 1
    roles = dict(session.execute(select(Member.email, Member.role)).all())
    assert roles["alice@example.com"] == "primary_owner"
    assert roles["bob@example.com"] == "admin"
    assert {
        roles[e]
        for e in (
            "carol@example.com",
            "dave@example.com",
            "erin@example.com",
            "frank@example.com",
            "gina@example.com",
        )
    } == {"member"}
    rotations = {r.name: r for r in session.scalars(select(Rotation))}
    assert set(rotations) == {*DEMO_BINDINGS, MANUAL_ONLY}
    assert all(r.mode == "manual" for r in rotations.values())
    assert [m.member.email for m in rotations["Primary"].members] == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]

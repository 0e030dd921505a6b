"""Structured logs: task context on every line of a task, and never a secret.

A real worker (JSON logs, as in production) writes its log file, which is read back; the
pipeline's rules one by one, in-process, are in tests/unit/workers/core/test_logging.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.secrets import stored_ciphertext
from tests.support.stack import demo_api_key
from workers.core.db import transaction
from workers.tasking.contract import VALIDATE_API_KEY
from workers.tasking.enqueue import enqueue

CLIENT_SECRET = "cs-live-9f8e7d6c5b4a3f2e1d0c"


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def _task_lines(path: Path, task_id: str) -> list[dict]:
    """Every JSON line about this task: bound to it, or naming it in the text."""
    return [
        line
        for line in _json_lines(path)
        if line.get("task_id") == task_id or task_id in line.get("event", "")
    ]


def _wait_for(path: Path, task_id: str, phrase: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = _task_lines(path, task_id)
        if any(phrase in line.get("event", "") for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no {phrase!r} line for {task_id} in {path}"
        time.sleep(0.3)


@pytest.mark.integration
def test_worker_json_lines_carry_task_context_and_no_secret(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    log_path = live_workers["interactive"].log_path
    api_key = demo_api_key(sim)
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, api_key=api_key)
    conn.status = ConnectionStatus.VALIDATING
    session.commit()
    # PagerDuty fails (with the credential echoed back in its error body) more often than the
    # client's own retries absorb, so the task logs a retry with its exception, then succeeds.
    fault = {
        "kind": "error",
        "path_prefix": "/users",
        "status": 503,
        "times": 6,
        "body": f"upstream failed for Authorization: Token token={api_key} ({api_key})",
    }
    sim.control.post("/faults", json=fault).raise_for_status()
    with transaction() as tx:
        task_id = enqueue(
            tx, VALIDATE_API_KEY, workspace_id=ws.id, connection_id=conn.id, generation=1
        )

    lines = _wait_for(log_path, task_id, "succeeded")
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "connected"
    events = " | ".join(line["event"] for line in lines)
    for phrase in ("received", "retry", "connection connected", "succeeded"):
        assert phrase in events, events
    for line in lines:
        assert line["task_id"] == task_id, line
        assert line["task_name"] == "pagerduty.validate_api_key", line
        assert line["connection_id"] == str(conn.id), line
        assert line["level"], line
        assert line["timestamp"], line
        assert line["logger"], line

    # A sender breaking the contract (a secret as a task argument): the task refuses the
    # message in words (one WARNING naming the argument, not its value). No secret in the log.
    from workers.tasking.app import app

    bad = app.send_task(
        VALIDATE_API_KEY.name,
        kwargs={
            "connection_id": str(conn.id),
            "generation": 1,
            "api_key": api_key,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert bad.get(timeout=30) == {
        "status": "refused",
        "task": VALIDATE_API_KEY.name,
        "error": f"{VALIDATE_API_KEY.name} takes no argument api_key, client_secret",
    }
    lines = _wait_for(log_path, bad.id, "refused")
    refusal = next(line for line in lines if line["event"].startswith("refused"))
    assert refusal["level"] == "warning"
    assert not [line for line in lines if line["level"] in ("error", "critical")], lines
    for line in lines:
        assert line["task_id"] == bad.id, line
        assert line["connection_id"] == str(conn.id), line

    text = log_path.read_text(errors="replace")
    for secret in (api_key, CLIENT_SECRET, stored_ciphertext(session, conn, "api_key")):
        assert secret not in text

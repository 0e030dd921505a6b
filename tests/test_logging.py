"""Structured logs: task context on every line of a task, and never a secret.

The first tests run a real worker (JSON logs, as in production) and read its log file; the rest
drive the logging pipeline in-process to pin down each rule.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.secrets import stored_ciphertext
from tests.support.stack import demo_api_key
from workers.core import logging as rrpd_logging
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
        assert line["level"] and line["timestamp"] and line["logger"], line

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


# --- the pipeline in-process ---------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with the project's JSON formatter, writing to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(rrpd_logging.make_formatter("json"))
    logger = logging.getLogger(f"rrpd-test-{uuid.uuid4().hex[:6]}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, buffer
    structlog.contextvars.clear_contextvars()


def _records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_secrets_are_redacted_in_messages_exceptions_and_nested_extras(captured) -> None:
    logger, buffer = captured
    key = "u+abcdefghijklmnop1234"
    logger.info("calling with Authorization: Bearer %s", "pdus+tokenvalue123456")
    try:
        raise RuntimeError(f"PagerDuty said: Token token={key}")
    except RuntimeError:
        logger.exception(
            "it failed",
            extra={
                "data": {"kwargs": f"{{'api_key': '{key}'}}", "nested": [{"refresh_token": "rt"}]},
                "client_secret": CLIENT_SECRET,
            },
        )
    first, second = _records(buffer)
    assert first["event"] == "calling with Authorization: Bearer [redacted]"
    assert second["data"]["kwargs"] == "{'api_key': '[redacted]'}"
    assert second["data"]["nested"] == [{"refresh_token": "[redacted]"}]
    assert second["client_secret"] == "[redacted]"
    assert "Token token=[redacted]" in second["exception"]
    text = buffer.getvalue()
    assert key not in text and CLIENT_SECRET not in text and "tokenvalue" not in text


def test_context_survives_the_task_body_until_postrun(captured) -> None:
    """Celery logs "succeeded" after the task base unbinds: the prerun binding still holds."""
    logger, buffer = captured

    class FakeTask:
        name = "pagerduty.sync_connection"

    rrpd_logging._bind_on_prerun(
        task_id="t-1", task=FakeTask(), kwargs={"connection_id": "c-1", "kind": "manual"}
    )
    rrpd_logging.bind_task_context(task_id="t-1", task_name=FakeTask.name, connection_id="c-1")
    logger.info("inside the body")
    rrpd_logging.unbind_task_context()
    logger.info("Task succeeded")
    rrpd_logging._clear_on_postrun()
    logger.info("between tasks")
    body, after_body, between = _records(buffer)
    for line in (body, after_body):
        assert (line["task_id"], line["task_name"], line["connection_id"]) == (
            "t-1",
            "pagerduty.sync_connection",
            "c-1",
        )
    assert "task_id" not in between and "connection_id" not in between


def test_celery_received_line_gets_fields_from_its_data(captured) -> None:
    logger, buffer = captured
    data = {
        "id": "t-2",
        "name": "pagerduty.refresh_token",
        "args": "()",
        "kwargs": "{'connection_id': 'c-2'}",
        "eta": None,
    }
    logger.info("Task %(name)s[%(id)s] received", data, extra={"data": data})
    (line,) = _records(buffer)
    assert line["event"] == "Task pagerduty.refresh_token[t-2] received"
    assert (line["task_id"], line["task_name"], line["connection_id"]) == (
        "t-2",
        "pagerduty.refresh_token",
        "c-2",
    )


def test_console_format_is_readable_and_redacted() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(rrpd_logging.make_formatter("console"))
    logger = logging.getLogger("rrpd-console-test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    rrpd_logging.bind_task_context(task_id="t-3", connection_id="c-3")
    try:
        logger.warning("refresh failed: refresh_token=rt-secret-value")
    finally:
        rrpd_logging.unbind_task_context()
    text = buffer.getvalue()
    assert "refresh failed" in text and "task_id=t-3" in text and "connection_id=c-3" in text
    assert "rt-secret-value" not in text
    assert not text.lstrip().startswith("{")

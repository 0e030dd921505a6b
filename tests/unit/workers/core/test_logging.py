"""Structured logs, the pipeline in-process: each redaction and context rule pinned down.

The real worker's log file is read in tests/integration/workers/core/test_logging.py.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from workers.core import logging as rrpd_logging

CLIENT_SECRET = "cs-live-9f8e7d6c5b4a3f2e1d0c"


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
    assert key not in text
    assert CLIENT_SECRET not in text
    assert "tokenvalue" not in text


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
    assert "task_id" not in between
    assert "connection_id" not in between


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
    assert "refresh failed" in text
    assert "task_id=t-3" in text
    assert "connection_id=c-3" in text
    assert "rt-secret-value" not in text
    assert not text.lstrip().startswith("{")

"""A real ``rrpd worker`` process consumes tasks through Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support import processes
from workers.tasking.app import app

pytestmark = pytest.mark.integration


def test_worker_runs_a_task_through_redis() -> None:
    with processes.worker("interactive", concurrency=1):
        result = app.send_task("rrpd.ping", kwargs={"payload": "hello"})
        # Sent by name with no queue: routed to the interactive queue, the only one this
        # worker consumes (every route: test_contract.py's PUBLIC_ROUTES).
        assert result.get(timeout=20) == {"reply": "hello"}


def _outcome_of_next_delivery(task_id: str, timeout: float = 20) -> str:
    """Send the task again and read the stored outcome straight from the result backend
    (no client-side result cache, which could still hold the previous delivery's answer)."""
    app.backend.forget(task_id)
    app.send_task("rrpd.ping", kwargs={"payload": "x"}, task_id=task_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = app.backend._get_task_meta_for(task_id)
        if meta["status"] == "SUCCESS":
            return "ok"
        if meta["status"] == "FAILURE":
            return type(meta["result"]).__name__
        time.sleep(0.05)
    raise AssertionError("no outcome stored")


def test_poison_message_is_dropped_after_too_many_deliveries() -> None:
    """A message that keeps coming back (a worker crash each time) is eventually refused."""
    from celeryconfig import MAX_DELIVERIES

    with processes.worker("interactive", concurrency=1):
        task_id = f"poison-test-{uuid.uuid4()}"
        outcomes = [_outcome_of_next_delivery(task_id) for _ in range(MAX_DELIVERIES + 1)]
    assert outcomes == ["ok"] * MAX_DELIVERIES + ["PoisonMessage"]

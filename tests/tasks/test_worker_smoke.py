"""A real ``rrpd worker`` process consumes tasks through Redis."""

from __future__ import annotations

import pytest

from tests.support import processes
from workers.celery_app import app

pytestmark = pytest.mark.integration


def test_worker_runs_a_task_through_redis() -> None:
    with processes.worker("interactive", concurrency=1):
        result = app.send_task("rrpd.ping", kwargs={"payload": "hello"})
        assert result.get(timeout=20) == {"reply": "hello"}
        # Routed by name to the interactive queue, as the task contract documents.
        assert app.amqp.router.route({}, "rrpd.ping")["queue"].name == "interactive"


def test_poison_message_is_dropped_after_too_many_deliveries() -> None:
    """A message that keeps coming back (a worker crash each time) is eventually refused."""
    from celeryconfig import MAX_DELIVERIES

    with processes.worker("interactive", concurrency=1):
        task_id = "poison-test-fixed-id"
        outcomes = []
        for _ in range(MAX_DELIVERIES + 1):
            app.AsyncResult(task_id).forget()  # wait for this delivery's outcome, not the last
            result = app.send_task("rrpd.ping", kwargs={"payload": "x"}, task_id=task_id)
            try:
                outcomes.append(result.get(timeout=20))
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[:MAX_DELIVERIES] == [{"reply": "x"}] * MAX_DELIVERIES
        assert outcomes[-1] == "PoisonMessage"

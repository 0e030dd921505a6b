"""The disconnect tasks' routes and declared limits, read from the registered tasks (no worker)."""

from __future__ import annotations

from workers.tasking.app import app

DISCONNECT = "pagerduty.disconnect"


def test_routing_and_declared_limits() -> None:
    import tasks.disconnect  # noqa: F401 - registers the tasks in this process

    for name in (DISCONNECT, "pagerduty.revoke_tokens"):
        assert app.amqp.router.route({}, name)["queue"].name == "interactive"
        task = app.tasks[name]
        assert task.queue == "interactive"
        assert task.acks_late
        assert task.soft_time_limit < task.time_limit <= 300
    assert app.tasks[DISCONNECT].max_retries >= 1

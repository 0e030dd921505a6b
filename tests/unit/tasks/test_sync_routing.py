"""The sync tasks' routes and declared limits, read from the registered tasks (no worker)."""

from __future__ import annotations

from workers.tasking.app import app

SYNC = "pagerduty.sync_connection"


def test_routing_and_declared_limits() -> None:
    import tasks.sync  # noqa: F401 - registers the tasks in this process

    for name, queue in ((SYNC, "sync"), ("pagerduty.schedule_syncs", "schedule")):
        assert app.amqp.router.route({}, name)["queue"].name == queue
        task = app.tasks[name]
        assert task.queue == queue
        assert task.acks_late
        assert task.soft_time_limit < task.time_limit <= 300

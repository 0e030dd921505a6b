"""The task base (workers/tasking/app.py): a database outage is retried, a SQL error of our
own code fails the task at once with its real error (what Flower and the logs then show)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc

from tests.support.db_errors import sqlite_sql_error
from workers.tasking import app as tasking_app


@pytest.fixture
def failing_task(redis_client):  # type: ignore[no-untyped-def]
    """A task on the real base whose body raises what the test gives it; counts its runs."""
    calls: list[int] = []
    raised: list[BaseException] = []

    @tasking_app.app.task(bind=True, base=tasking_app.RRPDTask, name="tests.raises")
    def raises(self):  # type: ignore[no-untyped-def]
        calls.append(self.request.retries)
        raise raised[0]

    yield raises, calls, raised
    tasking_app.app.tasks.pop("tests.raises", None)


def test_a_sql_error_of_ours_fails_the_task_at_once(
    failing_task, tmp_path: Path, monkeypatch
) -> None:
    task, calls, raised = failing_task
    raised.append(sqlite_sql_error(tmp_path))
    before = _failures_counted()
    result = task.apply()
    assert result.state == "FAILURE"
    assert isinstance(result.result, sqlalchemy.exc.OperationalError)
    assert "no such function: make_interval" in str(result.result)
    assert calls == [0]  # not retried as if the database were away
    # ... and counted where operators look (/metrics): by task and error class.
    assert _failures_counted() == before + 1


def _failures_counted() -> float:
    from workers.core import metrics

    field = 'rrpd_task_failures_total{error="OperationalError",task="tests.raises"}'
    return metrics.snapshot().get(field, 0.0)


def test_a_database_outage_is_retried(failing_task, monkeypatch) -> None:
    task, calls, raised = failing_task
    monkeypatch.setattr(tasking_app, "DATABASE_OUTAGE_MAX_RETRIES", 2)
    raised.append(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))  # the pool: an outage
    result = task.apply()
    assert calls == [0, 1, 2]  # the first run and two retries
    assert result.state == "FAILURE"

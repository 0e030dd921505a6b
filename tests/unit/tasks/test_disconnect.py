"""``pagerduty.disconnect`` and a transient database error: one mechanism retries it (the task
base, as for every task), with one backoff and the count docs/tasks.md states; the task's own
retry that came before it (a second backoff, a second count) is gone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.db_errors import raised
from tests.support.env import PG_ADMIN_URL
from tests.support.processes import free_port
from workers.disconnect import transaction
from workers.tasking import app as tasking_app
from workers.tasking.retrypolicy import RetryPolicy

DOCS = Path(__file__).resolve().parents[3] / "docs" / "tasks.md"


def _refused_connection() -> BaseException:
    """A real outage: PostgreSQL's driver refused at a port nothing listens on."""
    base = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1).rpartition("/")[0]
    host = base.rpartition("@")[2].rpartition(":")[0] or "127.0.0.1"
    url = f"{base.rpartition('@')[0]}@{host}:{free_port()}/postgres"
    return raised(url, "SELECT 1", connect_timeout=2)


class _Spy(RetryPolicy):
    """The database policy, recording which retry each countdown was drawn for."""

    def __init__(self, policy: RetryPolicy, drawn: list[int]) -> None:
        object.__setattr__(self, "_policy", policy)
        object.__setattr__(self, "_drawn", drawn)

    def countdown(self, retries: int, **kwargs: Any) -> float:
        self._drawn.append(retries)  # type: ignore[attr-defined]
        return self._policy.countdown(retries, **kwargs)  # type: ignore[attr-defined]


def test_a_database_outage_is_retried_the_documented_number_of_times_with_one_backoff(
    redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.disconnect import disconnect

    outage = _refused_connection()
    runs: list[int] = []

    def away(connection_id: str, *, actor_member_id: str | None = None) -> Any:
        runs.append(disconnect.request.retries)
        raise outage

    drawn: list[int] = []
    monkeypatch.setattr(transaction, "disconnect_connection", away)
    monkeypatch.setattr(
        tasking_app, "DATABASE_OUTAGE_RETRY", _Spy(tasking_app.DATABASE_OUTAGE_RETRY, drawn)
    )

    def second_backoff(self: Any, **kwargs: Any) -> float:
        raise AssertionError("a second retry mechanism drew a countdown")

    monkeypatch.setattr(tasking_app.RRPDTask, "retry_countdown", second_backoff)

    result = disconnect.apply(kwargs={"connection_id": "8d6f4f5e-8f3a-4a59-9d1e-3c8f8a1d2b7c"})

    documented = int(re.search(r"up to (\d+) times: about", DOCS.read_text())[1])  # type: ignore[index]
    assert documented == tasking_app.DATABASE_OUTAGE_MAX_RETRIES
    assert runs == list(range(documented + 1))  # the first run and every retry, each once
    assert drawn == list(range(documented))  # one countdown per retry, from the one policy
    assert result.state == "FAILURE"
    assert result.result is outage  # spent: the task fails with the real error

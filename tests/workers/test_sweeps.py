"""Beat's fan-out also finishes work whose task was lost (published after commit, then gone)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ConnectionStatus, TaskRecord, utcnow
from tests import factories
from workers.sync import fanout


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []

    def fake_send_task(name: str, kwargs: dict, **_: object) -> None:
        calls.append((name, kwargs))

    monkeypatch.setattr("workers.tasking.app.app.send_task", fake_send_task)
    return calls


def test_a_disconnect_whose_task_was_lost_is_sent_again(
    session: Session, published: list[tuple[str, dict]]
) -> None:
    ws = factories.workspace(session)
    stuck = factories.api_key_connection(session, ws, status=ConnectionStatus.DISCONNECTING)
    stuck.status_changed_at = utcnow() - timedelta(minutes=3)
    fresh_ws = factories.workspace(session)
    fresh = factories.api_key_connection(session, fresh_ws, status=ConnectionStatus.DISCONNECTING)
    session.commit()
    result = fanout.schedule_syncs()
    assert result["disconnects"] == 1
    assert ("pagerduty.disconnect", {"connection_id": str(stuck.id)}) in published
    assert all(kw.get("connection_id") != str(fresh.id) for _, kw in published)
    records = session.scalars(select(TaskRecord).where(TaskRecord.workspace_id == ws.id)).all()
    assert [r.task_name for r in records] == ["pagerduty.disconnect"]

"""The beat's fan-out (workers/sync/fanout.py): due connections enqueued once, with jitter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from models import (
    ConnectionStatus,
    PagerDutyConnection,
    utcnow,
)
from tests.support import factories
from tests.support.outbox import captured_direct_publishes
from workers.sync import fanout

pytestmark = pytest.mark.both_databases


@pytest.fixture
def captured_sends(monkeypatch) -> Iterator[list[dict[str, Any]]]:
    """The fan-out publishes directly (periodic work, no outbox row): caught here."""
    with captured_direct_publishes(monkeypatch) as sent:
        yield sent


@pytest.mark.postgres_only  # two rounds at once: concurrency is proven on PostgreSQL
def test_schedule_syncs_enqueues_due_connections_once_with_jitter(session, captured_sends) -> None:
    from workers.core.settings import get_settings

    now = utcnow()
    due = []
    for i in range(6):
        ws = factories.workspace(session)
        conn = factories.api_key_connection(session, ws)
        conn.next_sync_at = None if i % 2 else now - timedelta(seconds=5)
        due.append(conn.id)
    later = factories.api_key_connection(session, factories.workspace(session))
    later.next_sync_at = now + timedelta(seconds=30)
    factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.NEEDS_REAUTH
    )
    gone = factories.api_key_connection(session, factories.workspace(session))
    gone.status = "disconnected"
    session.commit()

    # Two beat processes at the same moment: each due connection is enqueued exactly once.
    outcomes: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(fanout.schedule_syncs(now)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    batches = [s for s in captured_sends if s["name"] == "pagerduty.check_connections"]
    sent = [cid for s in batches for cid in s["kwargs"]["connection_ids"]]
    assert sorted(sent) == sorted(str(c) for c in due)
    jitter = get_settings().sync_jitter_seconds
    assert all(0 <= (s["countdown"] or 0) < jitter for s in batches)
    assert sum(o["enqueued"] for o in outcomes) == 6

    session.rollback()
    session.expire_all()
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    for i, cid in enumerate(due):
        # Advanced from the previous due time by whole intervals (from now if never due).
        was = now if i % 2 else now - timedelta(seconds=5)
        assert session.get(PagerDutyConnection, cid).next_sync_at == was + interval
    # A slow round: run again before anything is due — nothing is enqueued twice.
    captured_sends.clear()
    assert fanout.schedule_syncs(now + timedelta(seconds=1))["enqueued"] == 0
    assert not [s for s in captured_sends if s["name"] == "pagerduty.check_connections"]
    assert fanout.schedule_syncs(now + interval)["enqueued"] == 6 + 1  # + `later`

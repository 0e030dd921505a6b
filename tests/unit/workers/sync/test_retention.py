"""``sync_runs`` retention (workers.sync.retention): old runs go in bounded batches, failed ones
are kept longer, recent ones stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import SyncRun, utcnow
from tests.support import factories
from workers.sync import retention
from workers.tasking.loops import registered

pytestmark = pytest.mark.both_databases


def test_old_runs_are_deleted_in_batches_and_failures_kept_longer(session) -> None:  # type: ignore[no-untyped-def]
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws)
    now = utcnow()
    ages = {  # label: (status, age in days)
        "recent ok": ("succeeded", 1),
        "recent skipped": ("skipped", 6),
        "old ok 1": ("succeeded", 8),
        "old ok 2": ("succeeded", 9),
        "old skipped": ("skipped", 10),
        "failed 8d": ("failed", 8),
        "failed 29d": ("failed", 29),
        "failed 31d": ("failed", 31),
    }
    ids: dict[str, uuid.UUID] = {}
    for label, (status, days) in ages.items():
        run = SyncRun(
            id=uuid.uuid4(),
            connection_id=conn.id,
            generation=1,
            kind="scheduled",
            status=status,
            started_at=now - timedelta(days=days),
        )
        session.add(run)
        ids[label] = run.id
    session.commit()

    def left() -> set[str]:
        session.rollback()
        present = set(
            session.execute(select(SyncRun.id).where(SyncRun.connection_id == conn.id)).scalars()
        )
        return {label for label, rid in ids.items() if rid in present}

    deleted = 0
    rounds = 0
    while (n := retention.delete_old_runs(now=now, batch=2)) > 0:
        assert n <= 2  # bounded: never more than a batch per transaction
        deleted += n
        rounds += 1
        assert rounds < 100

    assert left() == {"recent ok", "recent skipped", "failed 8d", "failed 29d"}
    assert deleted >= 4
    assert rounds >= 2


def test_the_retention_loop_is_registered() -> None:
    assert registered()["sync-runs-retention"].step is retention.retention_step

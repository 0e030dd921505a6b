"""``sync_runs`` retention: one row per connection per minute would grow forever.

Succeeded and skipped runs are kept ``RRPD_SYNC_RUNS_RETENTION_DAYS`` (7), failed ones
``RRPD_SYNC_RUNS_FAILED_RETENTION_DAYS`` (30): failures are what an admin or an operator looks
back for, and there are few of them. The ``sync-runs-retention`` loop (workers.tasking.loops)
deletes them oldest first in batches of ``RETENTION_BATCH`` rows, one short transaction each, so
a backlog (the first run after an upgrade) never holds a long lock or a huge transaction. Rows
are claimed ``FOR UPDATE SKIP LOCKED``: every worker node runs the loop, none waits on another.
The same loop prunes the on-call history (``workers.reports.retention``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select

from models import SyncRun, SyncRunStatus, utcnow
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.reports.retention import HISTORY_BATCH, delete_old_intervals
from workers.tasking.loops import register_loop

RETENTION_BATCH = 1000
# Between rounds when there was nothing (more) to delete: the cut-offs move by days.
IDLE_SECONDS = 300.0


def delete_old_runs(*, now: datetime | None = None, batch: int = RETENTION_BATCH) -> int:
    """Delete at most ``batch`` runs past their retention; returns how many were deleted."""
    settings = get_settings()
    moment = now or utcnow()
    keep_until = moment - timedelta(days=settings.sync_runs_retention_days)
    failed_until = moment - timedelta(days=settings.sync_runs_failed_retention_days)
    failed = SyncRun.status == SyncRunStatus.FAILED
    with transaction() as session:
        ids = list(
            session.execute(
                select(SyncRun.id)
                .where(
                    or_(
                        and_(~failed, SyncRun.started_at < keep_until),
                        and_(failed, SyncRun.started_at < failed_until),
                    )
                )
                .order_by(SyncRun.started_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if ids:
            session.execute(
                delete(SyncRun)
                .where(SyncRun.id.in_(ids))
                .execution_options(synchronize_session=False)
            )
    return len(ids)


def retention_step() -> float:
    # A full batch: more may wait, go again at once; otherwise sleep. The on-call history's
    # retention rides along (workers.reports.retention).
    runs_full = delete_old_runs() >= RETENTION_BATCH
    history_full = delete_old_intervals() >= HISTORY_BATCH
    return 0.0 if runs_full or history_full else IDLE_SECONDS


register_loop("sync-runs-retention", retention_step, max_sleep=IDLE_SECONDS)

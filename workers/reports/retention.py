"""On-call history retention: intervals that ended more than ``RRPD_ON_DUTY_HISTORY_DAYS``
(400) ago are deleted, oldest first, in batches (one short transaction each, rows claimed
``FOR UPDATE SKIP LOCKED`` so every node's loop can run it). Open intervals are never deleted,
however old: someone still on duty since then is still on duty. Run by the
``sync-runs-retention`` loop (``workers.sync.retention``), the periodic maintenance that prunes
old sync runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from models import OnDutyInterval, utcnow
from workers.core.db import transaction
from workers.core.settings import get_settings

HISTORY_BATCH = 1000


def delete_old_intervals(*, now: datetime | None = None, batch: int = HISTORY_BATCH) -> int:
    """Delete at most ``batch`` intervals past retention; returns how many were deleted."""
    cutoff = (now or utcnow()) - timedelta(days=get_settings().on_duty_history_days)
    iv = OnDutyInterval
    with transaction() as session:
        ids = list(
            session.execute(
                select(iv.id)
                .where(iv.ended_at.is_not(None), iv.ended_at < cutoff)
                .order_by(iv.ended_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if ids:
            session.execute(
                delete(iv).where(iv.id.in_(ids)).execution_options(synchronize_session=False)
            )
    return len(ids)

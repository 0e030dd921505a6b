"""Beat's fan-out: every connected connection that is due gets a sync, spread over a window.

The syncs are published directly once the claim has committed, not through the outbox: a
scheduled sync is periodic, not caused by a change, and one that Redis loses is simply due
again an interval later (the outbox would add a row per connection per minute for nothing).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from models import ConnectionStatus, PagerDutyConnection, utcnow
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.tasking.contract import SYNC_CONNECTION
from workers.tasking.enqueue import publish_many

# At most this many connections per beat round (the rest are still due next round).
FANOUT_BATCH = 20_000


def schedule_syncs(
    now: datetime | None = None,
    *,
    rng: random.Random | None = None,
    batch: int = FANOUT_BATCH,
) -> dict[str, int]:
    """Enqueue a sync for every connected connection that is due, spread over the jitter window.

    ``next_sync_at`` is pushed to now + interval in the same statement that picks the rows
    (``FOR UPDATE SKIP LOCKED``), so two beat processes, or a round slower than the interval,
    never enqueue a connection twice.
    """
    settings = get_settings()
    now = now or utcnow()
    rng = rng or random.Random()
    jitter = max(0.0, float(settings.sync_jitter_seconds))
    due = (PagerDutyConnection.status == ConnectionStatus.CONNECTED) & or_(
        PagerDutyConnection.next_sync_at.is_(None), PagerDutyConnection.next_sync_at <= now
    )
    pick = (
        select(PagerDutyConnection.id)
        .where(due)
        .order_by(PagerDutyConnection.next_sync_at.asc().nulls_first())
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with transaction() as session:
        ids = list(
            session.execute(
                update(PagerDutyConnection)
                .where(PagerDutyConnection.id.in_(pick), due)
                .values(next_sync_at=now + timedelta(seconds=settings.sync_interval_seconds))
                .returning(PagerDutyConnection.id)
                .execution_options(synchronize_session=False)
            ).scalars()
        )
    batch_messages = [
        ({"connection_id": str(cid), "kind": "scheduled"}, rng.uniform(0, jitter) or None)
        for cid in ids
    ]
    # Published once the claim has committed (never for a claim that rolled back), through one
    # producer: thousands of separate send_task calls each take a pooled connection.
    publish_many(SYNC_CONNECTION, batch_messages)
    return {"enqueued": len(ids)}

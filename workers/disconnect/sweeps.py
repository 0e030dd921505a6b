"""Re-send disconnects whose task was lost.

The API publishes ``pagerduty.disconnect`` after its commit, so a Redis failure at that moment
would leave the workspace ``disconnecting`` for ever. Beat's fan-out round
(``workers.sync.fanout.schedule_syncs``) calls ``resend_stuck_disconnects`` in its transaction;
the task is idempotent, so a disconnect that was merely slow is harmless to send again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection
from workers.tasking.contract import DISCONNECT
from workers.tasking.enqueue import enqueue

# A connection left in "disconnecting" this long lost its task.
DISCONNECT_SWEEP_AGE = timedelta(minutes=2)


def resend_stuck_disconnects(session: Session, now: datetime) -> int:
    """Enqueue (after ``session`` commits) a disconnect for every stuck connection."""
    stuck = session.execute(
        select(PagerDutyConnection.id, PagerDutyConnection.workspace_id).where(
            PagerDutyConnection.status == ConnectionStatus.DISCONNECTING,
            PagerDutyConnection.status_changed_at <= now - DISCONNECT_SWEEP_AGE,
        )
    ).all()
    for connection_id, workspace_id in stuck:
        enqueue(session, DISCONNECT, workspace_id=workspace_id, connection_id=connection_id)
    return len(stuck)

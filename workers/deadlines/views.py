"""What operators see of deadlines: which connections missed theirs (``rrpd attention``, the
``rrpd_connections_past_deadline`` gauge)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from models import ConnectionStatus, PagerDutyConnection
from models.connection import STATUS_MEANINGS

# The states that wait for a task ("connected" when a sync now is pending): those with a
# deadline in the one table of what each status means.
PENDING_STATUSES = tuple(s for s in ConnectionStatus if STATUS_MEANINGS[s].deadline is not None)


def past_deadline_clause(now: datetime) -> ColumnElement[bool]:
    """Its task missed a deadline: the loop drove it again at least once (the row says so until
    the state is left), or the deadline passed and no loop has driven it yet."""
    c = PagerDutyConnection
    return or_(
        and_(c.drive_at.is_not(None), or_(c.drives > 0, c.drive_at <= now)),
        # A pending credential's check (workers.connections.pending).
        and_(
            c.pending_drive_at.is_not(None),
            or_(c.pending_drives > 0, c.pending_drive_at <= now),
        ),
    )

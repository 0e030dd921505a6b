"""Searching the mirrored PagerDuty schedules a rotation can be bound to."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import (
    PagerDutySchedule,
    PagerDutyScheduleMember,
)
from workers.core.connection_rows import live_connection


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_schedules(
    session: Session,
    workspace_id: uuid.UUID,
    query: str | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Mirrored schedules of the live connection whose name contains ``query`` (any case)."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        return [], 0
    where = [PagerDutySchedule.connection_id == conn.id]
    if query and query.strip():
        where.append(
            func.lower(PagerDutySchedule.name).like(
                _like_pattern(query.strip().lower()), escape="\\"
            )
        )
    total = session.execute(select(func.count()).where(*where)).scalar_one()
    counts = (
        select(
            PagerDutyScheduleMember.schedule_pagerduty_id.label("sid"),
            func.count().label("n"),
        )
        .where(PagerDutyScheduleMember.connection_id == conn.id)
        .group_by(PagerDutyScheduleMember.schedule_pagerduty_id)
        .subquery()
    )
    rows = session.execute(
        select(PagerDutySchedule, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.sid == PagerDutySchedule.pagerduty_id)
        .where(*where)
        .order_by(func.lower(PagerDutySchedule.name), PagerDutySchedule.pagerduty_id)
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        {
            "id": s.pagerduty_id,
            "name": s.name,
            "time_zone": s.time_zone,
            "version": s.version,
            "member_count": n,
            "synced_at": s.synced_at,
        }
        for s, n in rows
    ]
    return items, total

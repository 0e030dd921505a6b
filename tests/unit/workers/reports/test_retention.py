"""On-call history retention (workers.reports.retention): intervals that ended more than
RRPD_ON_DUTY_HISTORY_DAYS (400) ago go in bounded batches, by the sync-runs retention loop;
open ones stay however old."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models import OnDutyInterval, utcnow
from tests.support import factories
from workers.core.settings import reset_settings_cache
from workers.reports.retention import delete_old_intervals
from workers.sync.retention import retention_step

pytestmark = pytest.mark.both_databases

D = timedelta(days=1)


def test_intervals_ended_past_retention_go_in_batches_and_open_ones_stay(session) -> None:  # type: ignore[no-untyped-def]
    ws = factories.workspace(session)
    rot = factories.rotation(session, ws)
    now = utcnow()
    ages = {  # label: (started days ago, ended days ago or None)
        "open since long ago": (900, None),
        "ended 399 days ago": (420, 399),
        "ended 401 days ago": (420, 401),
        "ended 402 days ago": (420, 402),
        "ended 500 days ago": (501, 500),
    }
    for label, (started, ended) in ages.items():
        session.add(
            OnDutyInterval(
                workspace_id=ws.id,
                rotation_id=rot.id,
                pagerduty_user_id=label,
                name=label,
                started_at=now - started * D,
                ended_at=None if ended is None else now - ended * D,
                source="sync",
            )
        )
    session.commit()

    assert delete_old_intervals(now=now, batch=2) == 2  # the oldest first
    assert delete_old_intervals(now=now, batch=2) == 1
    assert delete_old_intervals(now=now, batch=2) == 0
    session.rollback()
    left = set(session.scalars(select(OnDutyInterval.name)))
    assert left == {"open since long ago", "ended 399 days ago"}


def test_the_retention_loop_prunes_the_history_too(session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RRPD_ON_DUTY_HISTORY_DAYS", "30")
    reset_settings_cache()
    ws = factories.workspace(session)
    rot = factories.rotation(session, ws)
    now = utcnow()
    session.add(
        OnDutyInterval(
            workspace_id=ws.id,
            rotation_id=rot.id,
            pagerduty_user_id="PUOLD",
            name="Old",
            started_at=now - 40 * D,
            ended_at=now - 31 * D,
            source="handoff",
        )
    )
    session.commit()
    try:
        retention_step()
    finally:
        monkeypatch.delenv("RRPD_ON_DUTY_HISTORY_DAYS")
        reset_settings_cache()
    session.rollback()
    assert list(session.scalars(select(OnDutyInterval.name))) == []

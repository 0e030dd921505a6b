"""The on-call report over the real stack: a rotation bound to a simulator schedule goes through
a planned handoff (applied by a live worker's ``handoffs`` loop at its instant) and an override
(seen by a sync), then the real ``rrpd api`` process reports the period: each person's seconds
add up to it, to the second, and the handoff falls on its instant."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import OnDutyInterval, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support.bound_demo import Arranged, arrange, override
from workers.sync import run as sync

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


def _intervals(session: Session, a: Arranged) -> list[tuple[str, datetime, datetime | None, str]]:
    session.rollback()
    rows = session.execute(
        select(OnDutyInterval)
        .where(OnDutyInterval.rotation_id == a.rotation_id)
        .order_by(OnDutyInterval.started_at)
    ).scalars()
    return [(r.name, r.started_at, r.ended_at, r.source) for r in rows]


def _wait_for(session: Session, a: Arranged, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(_intervals(session, a)) < count:
        assert time.monotonic() < deadline, f"history: {_intervals(session, a)}"
        time.sleep(0.1)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_handoff_and_an_override_add_up_to_the_period_to_the_second(
    session: Session, sim: SimulatorHandle, api_url: str, live_workers: object
) -> None:
    a = arrange(session, sim, "admin@report.test")
    # Frank on call now, Erin from a whole second a few seconds ahead: a planned handoff.
    at = (utcnow() + timedelta(seconds=6)).replace(microsecond=0)
    override(sim, "PUFRANK", at - timedelta(minutes=5), at)
    override(sim, "PUERIN1", at, at + timedelta(minutes=30))
    assert sync.sync_connection(a.connection_id, kind="manual").status == "succeeded"
    _wait_for(session, a, 2, timeout=30)  # the live worker applies the handoff at ``at``
    time.sleep(3)  # Erin's turn lasts a few whole seconds

    # An override made now in PagerDuty puts Frank back on call; the next sync sees it.
    override(sim, "PUFRANK", utcnow() - timedelta(seconds=1), at + timedelta(minutes=20))
    assert sync.sync_connection(a.connection_id, kind="manual").status == "succeeded"

    (frank1, erin, frank2) = _intervals(session, a)
    assert (frank1[0], frank1[2], frank1[3]) == ("Frank", at, "sync")
    assert (erin[0], erin[1], erin[3]) == ("Erin", at, "handoff")  # its instant, not the loop's
    assert (frank2[0], frank2[1], frank2[2], frank2[3]) == ("Frank", erin[2], None, "sync")

    since = frank1[1].replace(microsecond=0)
    until = (utcnow() + timedelta(seconds=1)).replace(microsecond=0)
    time.sleep(1.1)  # the API's "now" past ``until``: Frank's open interval counts up to it
    resp = httpx.get(
        f"{api_url}/v1/workspaces/{a.workspace_id}/on-call-report",
        params={"since": _z(since), "until": _z(until), "rotation_id": str(a.rotation_id)},
        headers=a.headers,
    )
    assert resp.status_code == 200, resp.text
    people = {p["name"]: p for p in resp.json()["people"]}
    assert set(people) == {"Frank", "Erin"}
    assert people["Frank"]["shifts"] == 2
    assert people["Erin"]["shifts"] == 1
    period = int((until - since).total_seconds())
    assert people["Frank"]["seconds_on_duty"] + people["Erin"]["seconds_on_duty"] == period
    erin_seconds = int((erin[2].replace(microsecond=0) - at).total_seconds())
    assert erin_seconds >= 3
    assert people["Erin"]["seconds_on_duty"] == erin_seconds

    # The same through CSV.
    csv_resp = httpx.get(
        f"{api_url}/v1/workspaces/{a.workspace_id}/on-call-report",
        params={"since": _z(since), "until": _z(until)},
        headers={**a.headers, "Accept": "text/csv"},
    )
    assert csv_resp.status_code == 200
    lines = csv_resp.text.strip().splitlines()
    assert lines[0].startswith("kind,member_id,pagerduty_user_id,name,email,seconds_on_duty")
    assert len(lines) == 3

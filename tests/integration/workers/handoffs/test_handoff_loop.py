"""A scheduled handoff reaches the API at its instant, without another sync, exactly once.

Real worker processes run the ``handoffs`` loop; the simulator serves PagerDuty over sockets;
the API is a real ``rrpd api`` process. The handoff is an override placed a few seconds ahead
(Frank until T, Erin from T): overrides beat layers in PagerDuty's final schedule.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models import ScheduledHandoff, Workspace, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories, processes
from tests.support.bound_demo import ACCOUNT, SCHEDULE, Arranged, arrange, override
from workers.core.db import session_factory
from workers.sync import run as sync

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


def _handoff_ahead(sim: SimulatorHandle, seconds: int) -> datetime:
    """Frank on call now, Erin from ``seconds`` ahead (a whole second): returns that instant."""
    at = (utcnow() + timedelta(seconds=seconds)).replace(microsecond=0)
    override(sim, "PUFRANK", at - timedelta(minutes=5), at)
    override(sim, "PUERIN1", at, at + timedelta(minutes=30))
    return at


def _rotation(api_url: str, a: Arranged) -> dict:  # type: ignore[type-arg]
    resp = httpx.get(f"{api_url}/v1/workspaces/{a.workspace_id}/rotations", headers=a.headers)
    resp.raise_for_status()
    (rot,) = [r for r in resp.json()["rotations"] if r["id"] == str(a.rotation_id)]
    return rot


def _on_duty(api_url: str, a: Arranged) -> list[str] | None:
    """Who the API shows on duty; None while it answers 503 (another test may be stopping
    Redis or PostgreSQL on this shared machine: keep polling)."""
    try:
        return [m["name"] for m in _rotation(api_url, a)["on_duty"]]
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 503:
            return None
        raise


def _wait_for_erin(api_url: str, a: Arranged, timeout: float) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _on_duty(api_url, a) == ["Erin"]:
            return utcnow()
        time.sleep(0.05)
    raise AssertionError(f"Erin never came on duty; on duty: {_on_duty(api_url, a)}")


def _handoff_events(session: Session, a: Arranged) -> list[dict]:  # type: ignore[type-arg]
    session.rollback()
    rows = session.execute(
        text(
            "SELECT payload FROM outbox_messages WHERE kind = 'event' "
            "AND name = 'rotation.on_duty.changed' ORDER BY id"
        )
    ).scalars()
    return [
        p
        for p in rows
        if p["rotation_id"] == str(a.rotation_id) and p["data"]["cause"] == "handoff"
    ]


def _sync(a: Arranged) -> None:
    assert sync.sync_connection(a.connection_id, kind="manual").status == "succeeded"


@pytest.mark.clock  # the handoff instant at other hours too (the crash test below is not)
def test_a_handoff_is_visible_through_the_api_at_its_instant_without_another_sync(
    session: Session, sim: SimulatorHandle, api_url: str, live_workers: object
) -> None:
    a = arrange(session, sim, "admin@handoffs.test")
    at = _handoff_ahead(sim, 6)
    _sync(a)
    before = _rotation(api_url, a)
    assert [m["name"] for m in before["on_duty"]] == ["Frank"]
    assert before["next_handoff"]["text"] == f"Erin from {at:%H:%M} UTC"
    runs_before = session.execute(text("SELECT count(*) FROM sync_runs")).scalar_one()

    seen = _wait_for_erin(api_url, a, timeout=30)

    assert seen >= at, "applied before its instant"
    assert (seen - at).total_seconds() < 5, f"seen {seen - at} after the instant"
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM sync_runs")).scalar_one() == runs_before
    (event,) = _handoff_events(session, a)
    assert event["data"]["schedule_id"] == SCHEDULE


def test_a_worker_killed_before_the_instant_loses_nothing_and_applies_it_once(
    session: Session, sim: SimulatorHandle, api_url: str
) -> None:
    a = arrange(session, sim, "admin@handoffs.test")
    at = _handoff_ahead(sim, 20)  # room for a worker to start and be killed before it
    _sync(a)
    loop_only = {"RRPD_WORKER_LOOPS": "handoffs"}
    # Until the restart, this transaction holds the connection row: every handoff loop (also
    # those of other tests' live workers) skips it, so the due row must survive on its own.
    holder = session_factory()()
    try:
        holder.execute(
            text("SELECT id FROM pagerduty_connections WHERE id = :id FOR UPDATE"),
            {"id": a.connection_id},
        )
        with processes.isolated_worker(env=loop_only) as (proc, _client):
            processes.kill_hard(proc)
        assert utcnow() < at, "the worker took too long to start; the test proves nothing"
        while utcnow() < at + timedelta(seconds=1):
            time.sleep(0.1)
        assert _on_duty(api_url, a) == ["Frank"]
        session.rollback()
        due = session.scalars(
            select(ScheduledHandoff).where(
                ScheduledHandoff.rotation_id == a.rotation_id, ScheduledHandoff.at <= utcnow()
            )
        ).all()
        assert [r.at for r in due] == [at]  # due, and not applied while no loop could
        with processes.isolated_worker(env=loop_only):
            holder.rollback()  # the restarted worker's next round may take it now
            _wait_for_erin(api_url, a, timeout=10)
            time.sleep(2.5)  # more rounds: none applies it again
    finally:
        holder.close()
    assert len(_handoff_events(session, a)) == 1
    assert _on_duty(api_url, a) == ["Erin"]


def test_a_rotation_bound_to_two_schedules_through_the_api_follows_a_handoff_in_one(
    session: Session, sim: SimulatorHandle, api_url: str, live_workers: object
) -> None:
    """Bound by ``PUT ... {"schedule_ids": [...]}``: on duty is everyone on call in either
    schedule; the first's handoff applies at its instant and keeps the second's person on duty;
    a disconnect then makes it Manual with no schedule left."""
    a = arrange(session, sim, "admin@handoffs.test")
    ws = session.get(Workspace, a.workspace_id)
    assert ws is not None
    second_people = {  # the second schedule's people, all members here
        "PUBOB01": ("bob@example.com", "Bob"),
        "PUCAROL": ("carol@example.com", "Carol"),
        "PUDAVE1": ("dave@example.com", "Dave"),
        "PUCONTR": ("contractor@outside.example", "Casey"),
    }
    for email, name in second_people.values():
        factories.member(session, ws, email, display_name=name)
    session.commit()
    _sync(a)  # the directory: both schedules mirrored
    resp = httpx.put(
        f"{api_url}/v1/workspaces/{a.workspace_id}/rotations/{a.rotation_id}/pagerduty-schedule",
        json={"schedule_ids": [SCHEDULE, "PSSECON"]},
        headers=a.headers,
    )
    assert resp.status_code == 202, resp.text
    assert [s["id"] for s in resp.json()["rotation"]["schedules"]] == [SCHEDULE, "PSSECON"]
    at = _handoff_ahead(sim, 6)
    _sync(a)
    (second,) = sorted(
        sim.control.get(f"/accounts/{ACCOUNT}/schedules/PSSECON/oncall").json()["user_ids"]
    )
    second_name = second_people[second][1]
    before = _rotation(api_url, a)
    assert sorted(m["name"] for m in before["on_duty"]) == sorted(["Frank", second_name])

    deadline = time.monotonic() + 30
    want = sorted(["Erin", second_name])
    while time.monotonic() < deadline and sorted(_on_duty(api_url, a) or []) != want:
        time.sleep(0.05)
    assert sorted(_on_duty(api_url, a) or []) == want
    assert utcnow() >= at
    (event,) = _handoff_events(session, a)
    assert event["data"]["schedule_id"] == SCHEDULE

    resp = httpx.delete(f"{api_url}/v1/workspaces/{a.workspace_id}/pagerduty", headers=a.headers)
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _rotation(api_url, a)["mode"] != "manual":
        time.sleep(0.1)
    after = _rotation(api_url, a)
    assert (after["mode"], after["schedule"], after["schedules"]) == ("manual", None, [])
    assert sorted(m["name"] for m in after["on_duty"]) == want  # kept by hand
    session.rollback()
    left = session.execute(
        text("SELECT count(*) FROM rotation_schedules WHERE rotation_id = :r"),
        {"r": a.rotation_id},
    ).scalar_one()
    assert left == 0

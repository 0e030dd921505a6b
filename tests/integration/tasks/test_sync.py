"""``pagerduty.sync_connection`` / ``pagerduty.schedule_syncs`` by name, on real workers.

The workers (``live_workers``) are real ``rrpd worker`` processes reading the same PostgreSQL
database and the in-process PagerDuty simulator; the test enqueues by public task name only.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from models import PagerDutyConnection, PagerDutyUser, SyncRun
from tests.support.connections import stored_connection, wait_until
from tests.support.sync import (
    ACCOUNT,
    arrange_demo,
    expected_members,
    on_call,
    rotation_state,
)
from workers.tasking.app import app

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

SYNC = "pagerduty.sync_connection"


def run_sync(connection_id: uuid.UUID, kind: str = "manual", timeout: float = 60) -> dict:
    result = app.send_task(SYNC, kwargs={"connection_id": str(connection_id), "kind": kind})
    return result.get(timeout=timeout)


def test_pagerduty_changes_reach_rotations_through_a_real_worker(
    session, sim, live_workers
) -> None:
    demo = arrange_demo(session, sim)
    first = run_sync(demo.connection_id, kind="initial")
    assert first["status"] == "succeeded"
    assert first["created"] > 0
    assert "credential" not in str(first).lower()  # small plain dict, no secrets

    def duty(name: str) -> set:
        return rotation_state(session, demo.rotations[name])[1]

    # v3 schedule with overlapping assignments: several people on duty at once.
    assert {demo.members["erin"], demo.members["frank"]} <= duty("fts")
    assert duty("fts") == expected_members(demo, on_call(sim, "PSFTSUN"))

    # An override in PagerDuty reaches the rotation on the next sync.
    override = sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUBOB01", "start": "now-1m", "duration_seconds": 3600},
    ).json()
    assert run_sync(demo.connection_id)["status"] == "succeeded"
    assert demo.members["bob"] in duty("primary")
    assert duty("primary") == expected_members(demo, on_call(sim, "PSPRIMA"))
    # ... and its removal too.
    sim.control.delete(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides/{override['id']}"
    ).raise_for_status()
    assert run_sync(demo.connection_id)["status"] == "succeeded"
    assert demo.members["bob"] not in duty("primary")

    # An email change upstream: Carol's new address matches no member, so she is unlinked.
    sim.control.patch(
        f"/accounts/{ACCOUNT}/users/PUCAROL", json={"email": "carol@new-company.example"}
    ).raise_for_status()
    assert run_sync(demo.connection_id)["status"] == "succeeded"
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert demo.members["carol"] not in members
    carol = session.execute(
        select(PagerDutyUser).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == "PUCAROL",
        )
    ).scalar_one()
    assert carol.member_id is None
    assert carol.email == "carol@new-company.example"

    # A user deleted upstream leaves every rotation; PagerDuty keeps them on schedules as an
    # inactive placeholder, and so does the mirror (never linked to a member).
    sim.control.delete(f"/accounts/{ACCOUNT}/users/PUBOB01").raise_for_status()
    result = run_sync(demo.connection_id)
    assert result["status"] == "succeeded"
    assert result["deleted"] > 0
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members["alice"]]
    session.rollback()
    bob = session.execute(
        select(PagerDutyUser).where(PagerDutyUser.pagerduty_id == "PUBOB01")
    ).scalar_one()
    assert (bob.active, bob.member_id) == (False, None)

    # Nothing changed upstream: the next sync writes nothing but its SyncRun.
    quiet = run_sync(demo.connection_id)
    assert (quiet["created"], quiet["updated"], quiet["deleted"]) == (0, 0, 0)


def test_transient_failure_is_retried_by_celery(session, sim, live_workers) -> None:
    demo = arrange_demo(session, sim, bind={"primary": "PSPRIMA"})
    # Five 500s: the client's own four retries are used up, so the task itself retries.
    sim.control.post(
        "/faults", json={"kind": "error", "status": 500, "path_prefix": "/users", "times": 5}
    ).raise_for_status()

    result = run_sync(demo.connection_id, timeout=90)

    assert result["status"] == "succeeded"
    session.rollback()
    runs = list(
        session.execute(
            select(SyncRun.status, SyncRun.error)
            .where(SyncRun.connection_id == demo.connection_id)
            .order_by(SyncRun.started_at)
        ).all()
    )
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert "PagerDuty could not be read right now" in runs[0].error
    conn = session.get(PagerDutyConnection, demo.connection_id)
    session.refresh(conn)
    assert conn.consecutive_sync_failures == 0


def test_schedule_syncs_by_name_marks_due_connections(session, sim, live_workers) -> None:
    demo = arrange_demo(session, sim, bind={})
    result: Any = app.send_task("pagerduty.schedule_syncs").get(timeout=30)
    assert result["enqueued"] >= 1
    session.rollback()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    session.refresh(conn)
    assert conn.next_sync_at is not None


def test_check_connections_by_name_checks_a_batch_on_a_real_worker(
    session, sim, live_workers
) -> None:
    """Beat's batch message: quiet connections get their "last checked" and no history row;
    the one that changed upstream gets its change and its run."""
    quiet = arrange_demo(session, sim, bind={"secondary": "PSSECON"})
    changed = arrange_demo(session, sim, bind={"primary": "PSPRIMA"})
    for demo in (quiet, changed):
        assert run_sync(demo.connection_id, kind="initial")["status"] == "succeeded"
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    session.rollback()
    runs_before = {
        d.connection_id: session.scalar(
            select(func.count()).where(SyncRun.connection_id == d.connection_id)
        )
        for d in (quiet, changed)
    }

    app.send_task(
        "pagerduty.check_connections",
        kwargs={"connection_ids": [str(quiet.connection_id), str(changed.connection_id)]},
    )

    def checked() -> bool:
        session.rollback()
        return (
            stored_connection(session, quiet.connection_id).last_checked_at is not None
            and changed.members["frank"] in rotation_state(session, changed.rotations["primary"])[1]
        )

    wait_until(session, checked)
    session.rollback()
    runs_after = {
        cid: session.scalar(select(func.count()).where(SyncRun.connection_id == cid))
        for cid in runs_before
    }
    assert runs_after == {
        quiet.connection_id: runs_before[quiet.connection_id],
        changed.connection_id: runs_before[changed.connection_id] + 1,
    }

""" "Your shift moved" end to end: a real ``rrpd worker`` reads the simulator over sockets, a
relay publishes the events. Binding's first read stores the rotation's next 7 days and tells
nobody; an override made for tomorrow is one ``rotation.upcoming_changed`` at the next
upcoming read ("sync now" here; hourly otherwise), naming the override's person with the hours
added and the replaced person with the same hours removed; a read that finds nothing changed
publishes nothing (workers.sync.upcoming)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from models import OutboxKind, Role, RotationUpcoming, Workspace, utcnow
from tests.support import factories
from tests.support.connections import wait_until
from tests.support.outbox import committed
from tests.support.sync import ACCOUNT, arrange_demo
from workers.core.access import Actor
from workers.core.db import transaction
from workers.rotations import binding
from workers.tasking.app import app

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

ROOT = Path(__file__).resolve().parents[4]
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text())
UPCOMING = "rotation.upcoming_changed"


def _published(rotation_id: uuid.UUID) -> list[dict[str, Any]]:
    """This rotation's upcoming events the relay has published to the stream."""
    return [
        row.payload
        for row in committed(OutboxKind.EVENT)
        if row.payload["type"] == UPCOMING
        and row.payload["rotation_id"] == str(rotation_id)
        and row.published_at is not None
    ]


def _sync_now(connection_id: uuid.UUID) -> dict[str, Any]:
    result = app.send_task(
        "pagerduty.sync_connection",
        kwargs={"connection_id": str(connection_id), "kind": "manual"},
    )
    out: dict[str, Any] = result.get(timeout=60)
    assert out["status"] == "succeeded", out
    return out


def test_an_override_for_tomorrow_is_told_once_through_a_real_worker(
    session, sim, live_workers
) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, sim, bind={})
    ws = session.get(Workspace, demo.workspace_id)
    admin = factories.member(session, ws, "ada@upcoming.test", Role.ADMIN, display_name="Ada")
    session.commit()
    rotation_id = demo.manual_rotation
    _sync_now(demo.connection_id)  # the mirror a binding chooses from: nothing bound yet

    # Bind: the binding sync (enqueued with the binding, run by the worker) stores the plan.
    with transaction() as tx:
        binding.bind_rotation(
            tx, Actor(demo.workspace_id, admin.id, Role.ADMIN), rotation_id, "PSPRIMA"
        )
    first = wait_until(session, lambda: session.get(RotationUpcoming, rotation_id), timeout=60)
    assert first.schedule_id == "PSPRIMA"
    assert first.read_until - first.read_from == timedelta(days=7)
    assert not [e for e in committed(OutboxKind.EVENT) if e.payload["type"] == UPCOMING]

    # Tomorrow 10:00-14:00 UTC Erin covers; whoever the plan had then is replaced.
    lo = (utcnow() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    hi = lo + timedelta(hours=4)
    replaced = {
        uid
        for uid, start, end in first.intervals
        if datetime.fromisoformat(start) < hi and datetime.fromisoformat(end) > lo
    }
    assert replaced
    assert "PUERIN1" not in replaced
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUERIN1", "start": lo.isoformat(), "end": hi.isoformat()},
    ).raise_for_status()

    _sync_now(demo.connection_id)

    (event,) = wait_until(session, lambda: _published(rotation_id), timeout=30)
    jsonschema.validate(event, SCHEMA)
    assert event["connection_id"] == str(demo.connection_id)
    assert event["data"]["schedule_id"] == "PSPRIMA"
    people = {p["pagerduty_user_id"]: p for p in event["data"]["people"]}
    z = "%Y-%m-%dT%H:%M:%S.%fZ"
    window = [{"start": lo.astimezone(UTC).strftime(z), "end": hi.astimezone(UTC).strftime(z)}]
    assert people["PUERIN1"]["added"] == window
    assert people["PUERIN1"]["removed"] == []
    assert people["PUERIN1"]["member_id"] == str(demo.members["erin"])
    assert set(people) == {"PUERIN1"} | replaced
    if len(replaced) == 1:  # one person had those hours: they lose exactly them
        (uid,) = replaced
        assert people[uid]["removed"] == window
        assert people[uid]["added"] == []

    # Nothing changed since: another read publishes nothing.
    _sync_now(demo.connection_id)
    assert len(_published(rotation_id)) == 1
    assert not [e for e in committed(OutboxKind.EVENT) if e.payload["type"] == UPCOMING][1:]

"""Events are written with the change that causes them, carry the whole new state, and are
numbered per key; a rolled-back change writes none."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    OutboxMessage,
    PagerDutyConnection,
    PagerDutySchedule,
    Role,
    RotationOnDuty,
    utcnow,
)
from tests.support import factories
from tests.support.outbox import committed_events, paused_outbox
from tests.support.sync import Sched, apply_snapshot, snapshot_of
from tests.support.sync import small as small
from workers import events
from workers.connections import activation, setup
from workers.core.access import Actor
from workers.core.db import transaction
from workers.disconnect import transaction as disconnect
from workers.pagerduty.records import User
from workers.rotations import binding

pytestmark = pytest.mark.postgres_only

ROOT = Path(__file__).resolve().parents[4]
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text())


@pytest.fixture(autouse=True)
def _no_relay(db: str) -> Any:
    with paused_outbox():
        yield


def _of(kind: str) -> list[dict[str, Any]]:
    found = [e for e in committed_events() if e["type"] == kind]
    for event in found:
        jsonschema.validate(event, SCHEMA)
    return found


def test_a_sync_writes_members_and_on_duty_events_with_the_whole_new_state(session, small) -> None:
    ann, ben, cy = (str(small.members[k]) for k in ("ann", "ben", "cy"))
    users = [
        User("U1", "Ann", "ann@example.com"),
        User("U2", "Ben", "ben@example.com"),
        User("U3", "Cy", "cy@example.com"),
    ]
    apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(users, [Sched("PS1", "S", "v2", "UTC", ("U1", "U2"), ("U1",))]),
    )
    # A handoff: Ben takes over from Ann; Cy joins the schedule.
    apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(users, [Sched("PS1", "S", "v2", "UTC", ("U1", "U2", "U3"), ("U2",))]),
    )
    # Nothing changed: no event.
    apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(users, [Sched("PS1", "S", "v2", "UTC", ("U1", "U2", "U3"), ("U2",))]),
    )

    members, on_duty = _of("rotation.members.changed"), _of("rotation.on_duty.changed")
    assert [e["data"]["members"] for e in members] == [[ann, ben], [ann, ben, cy]]
    assert [e["data"]["joined"] for e in members] == [[ann, ben], [cy]]
    assert [e["data"]["on_duty"] for e in on_duty] == [[ann], [ben]]
    assert on_duty[1]["data"]["came_on_duty"] == [ben]
    assert on_duty[1]["data"]["went_off_duty"] == [ann]
    assert {e["rotation_id"] for e in members + on_duty} == {str(small.rotations["bound"])}
    assert {e["connection_id"] for e in members + on_duty} == {str(small.connection_id)}
    assert {e["data"]["schedule_id"] for e in members + on_duty} == {"PS1"}
    # One sequence per rotation, in the order written: members before on-duty in one sync.
    assert [(e["type"], e["sequence"]) for e in committed_events()] == [
        ("rotation.members.changed", 1),
        ("rotation.on_duty.changed", 2),
        ("rotation.members.changed", 3),
        ("rotation.on_duty.changed", 4),
    ]


def test_a_rolled_back_change_writes_no_event(session: Session) -> None:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    session.commit()

    def write_then_fail() -> None:
        with transaction() as tx:
            setup.set_api_key(tx, Actor(ws.id, admin.id, Role.ADMIN), "u+abcdefghijklmnopqrst")
            raise RuntimeError("the request failed after the write")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert committed_events() == []
    with transaction() as tx:
        assert tx.scalar(select(OutboxMessage.id).limit(1)) is None


def test_every_connection_status_change_is_an_event(session: Session) -> None:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    session.commit()
    actor = Actor(ws.id, admin.id, Role.ADMIN)
    with transaction() as tx:
        cid = setup.set_api_key(tx, actor, "u+abcdefghijklmnopqrst").connection.id
    activation.finish_invalid(cid, 1, "PagerDuty rejected this API key.")
    with transaction() as tx:
        setup.set_api_key(tx, actor, "u+abcdefghijklmnopqrsu")
    with transaction() as tx:
        conn = tx.get(PagerDutyConnection, cid)
        events.transition(tx, conn, ConnectionStatus.CONNECTED)
    disconnect.disconnect_connection(cid)

    changes = [
        (e["sequence"], e["data"]["previous_status"], e["data"]["status"], e["data"]["reason"])
        for e in _of("connection.status.changed")
    ]
    assert changes == [
        (1, None, "validating", None),
        (2, "validating", "invalid", "PagerDuty rejected this API key."),
        (3, "invalid", "validating", None),
        (4, "validating", "connected", None),
        (5, "connected", "disconnecting", None),
        (6, "disconnecting", "disconnected", None),
    ]


def test_bind_unbind_and_disconnect_say_so_with_the_people_kept(session: Session) -> None:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    bob = factories.member(session, ws)
    conn = factories.api_key_connection(session, ws)
    session.add(
        PagerDutySchedule(connection_id=conn.id, pagerduty_id="PS1", name="S", synced_at=utcnow())
    )
    one = factories.rotation(session, ws, [bob, admin], name="one")
    two = factories.rotation(session, ws, [bob], name="two")
    session.add(RotationOnDuty(rotation_id=one.id, member_id=bob.id))
    session.commit()
    actor = Actor(ws.id, admin.id, Role.ADMIN)
    with transaction() as tx:
        binding.bind_rotation(tx, actor, one.id, "PS1")
        binding.bind_rotation(tx, actor, two.id, "PS1")
    with transaction() as tx:
        binding.unbind_rotation(tx, actor, two.id)
    disconnect.disconnect_connection(conn.id)

    bound = _of("rotation.bound")
    assert [(e["rotation_id"], e["data"]["schedule_id"]) for e in bound] == [
        (str(one.id), "PS1"),
        (str(two.id), "PS1"),
    ]
    manual = _of("rotation.made_manual")
    assert [(e["rotation_id"], e["data"]["reason"], e["sequence"]) for e in manual] == [
        (str(two.id), "unbound", 2),
        (str(one.id), "disconnected", 2),
    ]
    assert manual[1]["data"]["members"] == [str(bob.id), str(admin.id)]
    assert manual[1]["data"]["on_duty"] == [str(bob.id)]
    assert manual[1]["connection_id"] == str(conn.id)


def test_sequences_follow_commit_order_under_concurrency(session: Session) -> None:
    """Transactions writing events of one key are ordered by the key's sequence row lock: the
    sequence, the outbox id and the commit agree, so the relay publishes them in order."""
    ws = factories.workspace(session)
    session.commit()
    rotation_id = uuid.uuid4()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(10):
                with transaction() as tx:
                    events.rotation_bound(
                        tx,
                        workspace_id=ws.id,
                        rotation_id=rotation_id,
                        connection_id=rotation_id,
                        schedule_id=f"PS{n}",
                        previous_schedule_id=None,
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [e["sequence"] for e in committed_events()] == list(range(1, 41))


def test_every_status_change_goes_through_events_transition() -> None:
    """``events.transition`` writes the status event; nothing else calls ``transition``
    directly (setup writes its event once the new credential's facts are set)."""
    allowed = {"workers/events/__init__.py", "workers/connections/setup.py"}
    offenders = []
    for path in sorted((ROOT / "workers").rglob("*.py")) + sorted(
        (ROOT / "api_stub").rglob("*.py")
    ):
        rel = str(path.relative_to(ROOT))
        if rel not in allowed and re.search(r"\.transition\(", path.read_text()):
            offenders.append(rel)
    assert offenders == []

"""A pending key of another PagerDuty account (workers/connections/account_change.py): its check
records what a switch does to each bound rotation; only the admin's confirmation swaps it in,
making Manual exactly the rotations whose schedule the new account lacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    AuditEvent,
    PagerDutyConnection,
    PagerDutySchedule,
    Role,
    Rotation,
    RotationMode,
    RotationSchedule,
    Workspace,
    utcnow,
)
from tests.support import factories
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.outbox import CommittedTasks, as_flat, committed_events, paused_outbox
from workers.connections import account_change, activation, messages, pending, setup, status
from workers.connections.status import PendingAccountOut
from workers.core.access import Actor, Conflict, Missing
from workers.core.db import transaction
from workers.deadlines.drive import run_round
from workers.disconnect.request import request_disconnect
from workers.disconnect.transaction import disconnect_connection
from workers.handoffs.bound import set_schedules
from workers.pagerduty.errors import Transient

pytestmark = pytest.mark.both_databases


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    with paused_outbox():
        yield CommittedTasks(as_flat)


class Arranged:
    def __init__(self, conn: PagerDutyConnection, actor: Actor, rotations: dict[str, Rotation]):
        self.conn, self.actor, self.rotations = conn, actor, rotations


def _bind(session: Session, rotation: Rotation, schedule_id: str) -> None:
    rotation.mode = RotationMode.PAGERDUTY
    rotation.pagerduty_schedule_id = schedule_id
    rotation.bound_at = utcnow()


def _arrange(session: Session, fake: InProcessPagerDuty) -> Arranged:
    """Connected to acme; "primary" bound to acme's PSPRIMA, "euro" to PSEUDAY (a schedule the
    euco account has), "by hand" Manual."""
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    bob = factories.member(session, ws)
    conn = factories.api_key_connection(session, ws, api_key=fake.api_key(), by=admin)
    conn.pagerduty_subdomain = "acme"
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    rotations = {
        "primary": factories.rotation(session, ws, [bob, admin], name="primary"),
        "euro": factories.rotation(session, ws, [admin], name="euro"),
        "by hand": factories.rotation(session, ws, [bob], name="by hand"),
    }
    _bind(session, rotations["primary"], "PSPRIMA")
    _bind(session, rotations["euro"], "PSEUDAY")
    session.commit()
    return Arranged(conn, Actor(ws.id, admin.id, Role.ADMIN), rotations)


def _stage_euco(fake: InProcessPagerDuty, arranged: Arranged) -> int:
    with transaction() as s:
        done = setup.set_api_key(s, arranged.actor, fake.api_key("euco-readonly"), "eu")
        assert done.connection.pending_generation is not None
        return done.connection.pending_generation


def _checked(fake: InProcessPagerDuty, arranged: Arranged) -> int:
    generation = _stage_euco(fake, arranged)
    result = activation.validate_api_key(
        arranged.conn.id, generation, client_factory=fake.reader_factory
    )
    assert result.outcome == "pending_account_change"
    return generation


def _reload(session: Session, conn: PagerDutyConnection) -> PagerDutyConnection:
    session.expire_all()
    again = session.get(PagerDutyConnection, conn.id)
    assert again is not None
    return again


def _modes(session: Session, arranged: Arranged) -> dict[str, tuple[str, str | None]]:
    session.expire_all()
    return {
        name: (r.mode, r.pagerduty_schedule_id)
        for name, r in ((n, session.get(Rotation, r.id)) for n, r in arranged.rotations.items())
        if r is not None
    }


def test_the_check_keeps_the_key_and_records_what_a_switch_does_to_each_rotation(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    _checked(fake, arranged)

    conn = _reload(session, arranged.conn)
    assert (conn.status, conn.generation, conn.pagerduty_subdomain) == ("connected", 1, "acme")
    assert conn.pending_api_key == fake.api_key("euco-readonly")
    assert conn.pending_account is not None
    assert conn.pending_account["subdomain"] == "euco"
    assert "PSEUDAY" in conn.pending_account["schedules"]
    assert "PSPRIMA" not in conn.pending_account["schedules"]
    assert (conn.pending_drive_at, conn.pending_drives) == (None, 0)  # waits for the admin
    assert run_round(utcnow() + timedelta(hours=1)).claimed == 0

    document = status.connection_status(session, conn.workspace_id).pending
    assert document is not None
    assert document.status == "account_change"
    assert document.account == PendingAccountOut(subdomain="euco", previous_subdomain="acme")
    assert document.rotations is not None
    assert [(r.name, r.schedule_id, r.outcome) for r in document.rotations] == [
        ("euro", "PSEUDAY", "stays_bound"),
        ("primary", "PSPRIMA", "made_manual"),
    ]
    assert document.rotations[1].schedule_name == "Primary"
    assert "confirm the switch" in document.message
    # Nothing changed: no sync, no event; the rotations are as they were.
    assert [m["name"] for m in published] == ["pagerduty.validate_api_key"]
    assert all(e["type"] != "rotation.made_manual" for e in committed_events())
    assert _modes(session, arranged)["primary"] == ("pagerduty", "PSPRIMA")


def test_a_failure_to_list_the_new_accounts_schedules_is_retried_not_a_verdict(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    generation = _stage_euco(fake, arranged)
    fake.control.post(
        "/faults", json={"kind": "error", "path_prefix": "/eu/schedules", "status": 503, "times": 1}
    ).raise_for_status()

    with pytest.raises(Transient):
        activation.validate_api_key(
            arranged.conn.id, generation, client_factory=fake.reader_factory
        )
    conn = _reload(session, arranged.conn)
    assert conn.pending_status == "checking"

    again = activation.validate_api_key(
        arranged.conn.id, generation, client_factory=fake.reader_factory
    )
    assert again.outcome == "pending_account_change"


def test_confirming_swaps_the_key_in_and_makes_manual_exactly_the_rotations_without_schedule(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    generation = _checked(fake, arranged)
    # Bound after the check to a schedule the check did not find: made Manual too.
    ws = session.get(Workspace, arranged.actor.workspace_id)
    assert ws is not None
    late = factories.rotation(session, ws, name="late")
    _bind(session, late, "PSSECON")
    session.commit()
    arranged.rotations["late"] = late

    with transaction() as s:
        account_change.confirm(s, arranged.actor)

    conn = _reload(session, arranged.conn)
    assert (conn.status, conn.generation) == ("connected", generation)
    assert conn.api_key == fake.api_key("euco-readonly")
    assert (conn.pagerduty_subdomain, conn.region) == ("euco", "eu")
    assert (conn.pending_status, conn.pending_api_key, conn.pending_account) == (None, None, None)
    assert _modes(session, arranged) == {
        "primary": ("manual", None),
        "euro": ("pagerduty", "PSEUDAY"),
        "by hand": ("manual", None),
        "late": ("manual", None),
    }
    manual = [e for e in committed_events() if e["type"] == "rotation.made_manual"]
    assert sorted((e["rotation_id"], e["data"]["reason"]) for e in manual) == sorted(
        [
            (str(arranged.rotations["primary"].id), "account_changed"),
            (str(late.id), "account_changed"),
        ]
    )
    primary = next(e for e in manual if e["rotation_id"] == str(arranged.rotations["primary"].id))
    assert primary["data"]["previous_schedule_id"] == "PSPRIMA"
    assert len(primary["data"]["members"]) == 2  # its people stay
    audits = session.scalars(select(AuditEvent).order_by(AuditEvent.created_at)).all()
    per_rotation = [a for a in audits if a.action == "rotation.pagerduty.made_manual"]
    assert sorted(a.details["rotation_id"] for a in per_rotation) == sorted(
        [str(arranged.rotations["primary"].id), str(late.id)]
    )
    assert all(a.actor_member_id == arranged.actor.member_id for a in per_rotation)
    confirmed = next(a for a in audits if a.action == "pagerduty.pending.account_change_confirmed")
    assert confirmed.details["previous_subdomain"] == "acme"
    assert confirmed.details["subdomain"] == "euco"
    assert [r["name"] for r in confirmed.details["rotations_staying_bound"]] == ["euro"]
    assert [m["name"] for m in published] == [
        "pagerduty.validate_api_key",
        "pagerduty.sync_connection",
    ]
    assert published[-1]["kind"] == "initial"

    # Confirming twice: nothing is pending any more.
    with pytest.raises(Missing) as second, transaction() as s:
        account_change.confirm(s, arranged.actor)
    assert second.value.code == "no_pending"


def test_only_an_account_change_can_be_confirmed(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    with pytest.raises(Missing), transaction() as s:
        account_change.confirm(s, arranged.actor)
    with transaction() as s:
        setup.set_api_key(s, arranged.actor, fake.api_key("demo-alice-user"), "us")
    with pytest.raises(Conflict) as checking, transaction() as s:
        account_change.confirm(s, arranged.actor)
    assert checking.value.code == "not_account_change"
    assert _reload(session, arranged.conn).generation == 1


def test_discarding_an_account_change_forgets_the_key_and_changes_nothing(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    _checked(fake, arranged)
    with transaction() as s:
        pending.discard(s, arranged.actor)

    conn = _reload(session, arranged.conn)
    assert (conn.generation, conn.api_key, conn.pagerduty_subdomain) == (1, fake.api_key(), "acme")
    assert (conn.pending_status, conn.pending_api_key, conn.pending_account) == (None, None, None)
    assert _modes(session, arranged)["primary"] == ("pagerduty", "PSPRIMA")
    with pytest.raises(Missing), transaction() as s:
        account_change.confirm(s, arranged.actor)


def test_a_disconnect_first_leaves_nothing_to_confirm(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    _checked(fake, arranged)
    with transaction() as s:
        request_disconnect(s, arranged.actor)

    with pytest.raises(Conflict) as refused, transaction() as s:
        account_change.confirm(s, arranged.actor)
    assert refused.value.code == "disconnecting"
    conn = _reload(session, arranged.conn)
    assert (conn.generation, conn.api_key, conn.pending_api_key) == (1, fake.api_key(), None)


def test_an_account_change_nobody_decides_about_is_forgotten_after_a_day(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    _checked(fake, arranged)
    assert account_change.forget_expired(utcnow() + timedelta(hours=23)) == 0
    assert account_change.forget_expired(utcnow() + timedelta(hours=25)) == 1

    conn = _reload(session, arranged.conn)
    assert (conn.pending_status, conn.pending_api_key, conn.pending_account) == ("lost", None, None)
    assert conn.pending_message == messages.ACCOUNT_CHANGE_EXPIRED
    with pytest.raises(Conflict), transaction() as s:
        account_change.confirm(s, arranged.actor)


def test_a_confirm_and_a_disconnect_at_once_take_turns_on_the_connection_row(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    """The disconnect asked for while a confirm holds the row waits for it, then goes on from
    the switched connection: every rotation still bound ends Manual ("disconnected")."""
    arranged = _arrange(session, fake)
    generation = _checked(fake, arranged)
    asking = threading.Event()

    def disconnect() -> None:
        asking.set()
        with transaction() as s:
            request_disconnect(s, arranged.actor)

    other = threading.Thread(target=disconnect)
    with transaction() as s:
        account_change.confirm(s, arranged.actor)
        other.start()
        asking.wait(5)
        time.sleep(0.3)
        assert other.is_alive()  # waiting on the connection row
    other.join(30)
    assert not other.is_alive()

    conn = _reload(session, arranged.conn)
    assert (conn.status, conn.generation, conn.api_key) == (
        "disconnecting",
        generation,
        fake.api_key("euco-readonly"),
    )
    disconnect_connection(conn.id)
    assert {mode for mode, _ in _modes(session, arranged).values()} == {"manual"}
    reasons = [
        (e["rotation_id"], e["data"]["reason"])
        for e in committed_events()
        if e["type"] == "rotation.made_manual"
    ]
    assert sorted(reasons) == sorted(
        [
            (str(arranged.rotations["primary"].id), "account_changed"),
            (str(arranged.rotations["euro"].id), "disconnected"),
        ]
    )


def test_a_new_key_over_a_waiting_account_change_supersedes_it_and_its_plan(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    _checked(fake, arranged)
    with transaction() as s:
        setup.set_api_key(s, arranged.actor, fake.api_key("demo-alice-user"), "us")

    conn = _reload(session, arranged.conn)
    assert (conn.pending_status, conn.pending_account) == ("checking", None)
    assert conn.pending_api_key == fake.api_key("demo-alice-user")
    with pytest.raises(Conflict), transaction() as s:
        account_change.confirm(s, arranged.actor)


def test_a_rotation_following_several_schedules_stays_bound_only_if_the_new_account_has_all(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    arranged = _arrange(session, fake)
    ws = session.get(Workspace, arranged.actor.workspace_id)
    assert ws is not None
    both = factories.rotation(session, ws, name="both")
    _bind(session, both, "PSEUDAY")
    session.flush()
    set_schedules(session, both.id, ["PSEUDAY", "PSPRIMA"])  # euco has the first only
    session.commit()
    arranged.rotations["both"] = both
    _checked(fake, arranged)

    document = status.connection_status(session, arranged.actor.workspace_id).pending
    assert document is not None
    assert document.rotations is not None
    assert {r.name: r.outcome for r in document.rotations}["both"] == "made_manual"

    with transaction() as s:
        account_change.confirm(s, arranged.actor)

    assert _modes(session, arranged)["both"] == ("manual", None)
    assert _modes(session, arranged)["euro"] == ("pagerduty", "PSEUDAY")
    assert (
        session.scalars(
            select(RotationSchedule).where(RotationSchedule.rotation_id == both.id)
        ).all()
        == []
    )

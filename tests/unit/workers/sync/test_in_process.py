"""Domain logic against the in-process PagerDuty (tests/support/fake_pagerduty.py).

The real client, snapshot, diff and activation code runs against the simulator's state in this
thread: no simulator socket, no Celery worker. PostgreSQL holds our rows as usual.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import ConnectionStatus, PagerDutyConnection, PagerDutyUser, SyncRun, utcnow
from tests.support import factories
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.outbox import CommittedTasks, as_flat, paused_outbox
from tests.support.sync import arrange_demo, expected_members, on_call, rotation_state
from workers.connections import activation
from workers.sync import run

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    """Tasks committed to the outbox (what will be published); no relay publishes them."""
    with paused_outbox():
        yield CommittedTasks(as_flat)


def test_the_demo_account_syncs_in_process(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)

    result = run.sync_once(demo.connection_id, kind="initial", client_factory=fake.sync_factory)

    assert result.status == "succeeded", result
    assert result.requests == 5 == sum(c.requests_made for c in fake.clients)
    members, duty = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members[n] for n in ("alice", "bob", "carol")]
    assert duty == expected_members(demo, on_call(fake, "PSPRIMA"))
    _, duty = rotation_state(session, demo.rotations["fts"])
    assert {demo.members["erin"], demo.members["frank"]} <= duty
    run_row = session.get(SyncRun, uuid.UUID(result.sync_run_id))
    assert (run_row.status, run_row.kind, run_row.requests_made) == ("succeeded", "initial", 5)

    # Nothing changed upstream: the second pass writes nothing but its own SyncRun.
    quiet = run.sync_once(demo.connection_id, client_factory=fake.sync_factory)
    assert (quiet.status, quiet.created, quiet.updated, quiet.deleted) == ("succeeded", 0, 0, 0)


def test_a_deleted_user_becomes_an_inactive_placeholder(session, fake) -> None:  # type: ignore[no-untyped-def]
    """Seen at the next directory read (members' cadence), the user directory not due: the
    schedule list names her as deleted and her own read (GET /users/{id}) says so."""
    demo = arrange_demo(session, fake, bind={"primary": "PSPRIMA"})
    start = utcnow()
    first = run.sync_once(demo.connection_id, client_factory=fake.sync_factory, now=lambda: start)
    assert first.status == "succeeded"

    fake.control.delete("/accounts/acme/users/PUCAROL").raise_for_status()
    result = run.sync_once(
        demo.connection_id,
        client_factory=fake.sync_factory,
        now=lambda: start + timedelta(seconds=900),
    )

    assert (result.status, result.read) == ("succeeded", "directory")
    assert fake.clients[-1].requests_by_endpoint.get("GET /users/{id}") == 1
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert demo.members["carol"] not in members
    carol = session.execute(
        select(PagerDutyUser).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == "PUCAROL",
        )
    ).scalar_one()
    assert (carol.active, carol.member_id, carol.email) == (False, None, None)


def test_a_schedule_deleted_in_pagerduty_is_flagged_on_its_rotation(session, fake) -> None:  # type: ignore[no-untyped-def]
    """The rotation keeps its last people (the sync says why) and is never shown as bound to a
    nameless schedule only: ``schedule.missing`` and ``rrpd attention`` name it."""
    from rrpd.ops import connections_needing_attention
    from workers.rotations.views import BoundScheduleOut, list_rotations

    demo = arrange_demo(session, fake, bind={"primary": "PSPRIMA"})
    assert run.sync_once(demo.connection_id, client_factory=fake.sync_factory).status == (
        "succeeded"
    )
    ws = session.get(PagerDutyConnection, demo.connection_id).workspace_id
    (primary,) = [r for r in list_rotations(session, ws) if r.mode == "pagerduty"]
    assert primary.schedule == BoundScheduleOut(id="PSPRIMA", name="Primary On-Call", missing=False)
    assert connections_needing_attention(session) == []

    del fake.state.accounts["acme"].schedules["PSPRIMA"]
    # "Sync now" reads the directory, where the schedule's absence shows.
    result = run.sync_once(demo.connection_id, kind="manual", client_factory=fake.sync_factory)

    assert result.status == "succeeded"
    assert "PSPRIMA: PagerDuty no longer lists it" in (result.error or "")
    session.expire_all()
    (primary,) = [r for r in list_rotations(session, ws) if r.mode == "pagerduty"]
    assert primary.schedule == BoundScheduleOut(id="PSPRIMA", name=None, missing=True)
    assert primary.members  # its last people stay
    (item,) = connections_needing_attention(session)
    assert (item["problem"], item["connection_id"]) == ("schedule_missing", demo.connection_id)


def test_an_api_key_is_validated_in_process(session, fake, published) -> None:  # type: ignore[no-untyped-def]
    ws = factories.workspace(session)
    conn = factories.api_key_connection(
        session, ws, api_key=fake.api_key(), status=ConnectionStatus.VALIDATING
    )
    session.commit()

    outcome = activation.validate_api_key(
        conn.id, conn.generation, client_factory=fake.reader_factory
    )

    assert outcome.outcome == "connected", outcome
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert (stored.status, stored.key_level, stored.pagerduty_subdomain) == (
        "connected",
        "account",  # the demo's read-only key is an account-level key
        "acme",
    )
    assert [m["name"] for m in published] == ["pagerduty.sync_connection"]
    assert published[0]["kind"] == "initial"


def test_a_refused_key_is_tried_in_both_regions_in_process(session, fake, published) -> None:  # type: ignore[no-untyped-def]
    ws = factories.workspace(session)
    conn = factories.api_key_connection(
        session, ws, api_key="u+thisKeyDoesNotExist1", status=ConnectionStatus.VALIDATING
    )
    session.commit()

    outcome = activation.validate_api_key(
        conn.id, conn.generation, client_factory=fake.reader_factory
    )

    assert outcome.outcome == "invalid"
    assert "in both regions (US and EU)" in (outcome.message or "")
    assert {c.base_url.endswith("/eu") for c in fake.clients} == {True, False}
    assert published == []

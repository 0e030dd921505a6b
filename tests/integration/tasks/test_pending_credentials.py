"""A new API key over a connected workspace, checked by real workers against the simulator
while the live key keeps serving (workers/connections/pending.py; the cases one by one run
in-process in tests/unit/workers/connections/test_pending.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Role, Rotation
from pagerduty_sim.server import SimulatorHandle
from tests.support.connections import stored_connection, succeeded_sync, wait_until
from tests.support.stack import demo_api_key
from tests.support.sync import arrange_demo
from workers.connections import account_change, messages, pending, setup, status
from workers.core.access import Actor
from workers.core.db import transaction
from workers.sync.request import sync_now

pytestmark = pytest.mark.integration

WRONG_KEY = "u+thisKeyDoesNotExist1"


def test_a_wrong_new_key_leaves_the_old_one_syncing_and_a_right_one_replaces_it(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    demo = arrange_demo(session, sim)
    cid = demo.connection_id
    actor = Actor(demo.workspace_id, demo.members["alice"], Role.ADMIN)
    old = demo_api_key(sim)

    with transaction() as s:
        setup.set_api_key(s, actor, WRONG_KEY, "us")
    conn = wait_until(
        session,
        lambda: (
            (c := stored_connection(session, cid)).pending_status not in (None, "checking") and c
        ),
    )
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pending_status == "rejected"
    assert conn.pending_message.startswith(messages.PENDING_REJECTED)

    # The old key still syncs: "sync now" is accepted and succeeds under generation 1.
    with transaction() as s:
        sync_now(s, actor)
    wait_until(session, lambda: succeeded_sync(session, cid, 1))

    # A right key of the same account (acme) replaces it: a new generation, and a sync with it.
    new = demo_api_key(sim, "demo-alice-user")
    with transaction() as s:
        setup.set_api_key(s, actor, new, "us")
    # Generation 3: the rejected key's check had 2, and no generation is handed out twice.
    conn = wait_until(session, lambda: (c := stored_connection(session, cid)).generation == 3 and c)
    assert (conn.status, conn.api_key, conn.pending_status) == ("connected", new, None)
    wait_until(session, lambda: succeeded_sync(session, cid, 3))


def test_a_key_of_another_account_is_set_aside_and_discarding_it_changes_nothing(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    demo = arrange_demo(session, sim)
    cid = demo.connection_id
    conn = stored_connection(session, cid)
    conn.pagerduty_subdomain = "acme"  # what the first check of the demo key recorded
    session.commit()
    actor = Actor(demo.workspace_id, demo.members["alice"], Role.ADMIN)
    old = demo_api_key(sim)

    with transaction() as s:
        setup.set_api_key(s, actor, demo_api_key(sim, "euco-readonly"), "eu")
    conn = wait_until(
        session,
        lambda: (
            (c := stored_connection(session, cid)).pending_status not in (None, "checking") and c
        ),
    )
    assert conn.pending_status == "account_change"
    assert (conn.status, conn.generation, conn.api_key) == ("connected", 1, old)
    assert conn.pagerduty_subdomain == "acme"
    bound = session.scalars(select(Rotation.mode).where(Rotation.workspace_id == demo.workspace_id))
    assert sorted(bound) == ["manual", "pagerduty", "pagerduty", "pagerduty"]

    with transaction() as s:
        pending.discard(s, actor)
    session.expire_all()
    conn = stored_connection(session, cid)
    assert (conn.status, conn.generation, conn.api_key, conn.pending_status) == (
        "connected",
        1,
        old,
        None,
    )


def test_a_confirmed_account_change_syncs_the_new_account_and_makes_the_rest_manual(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    """Issue 19 item 3 with real workers: the check waits for the admin with the plan, the
    confirmation swaps the key in, and the first sync of the new account succeeds."""
    demo = arrange_demo(session, sim, bind={"primary": "PSPRIMA", "euro": "PSEUDAY"})
    cid = demo.connection_id
    conn = stored_connection(session, cid)
    conn.pagerduty_subdomain = "acme"
    session.commit()
    actor = Actor(demo.workspace_id, demo.members["alice"], Role.ADMIN)
    new = demo_api_key(sim, "euco-readonly")

    with transaction() as s:
        setup.set_api_key(s, actor, new, "eu")
    wait_until(session, lambda: stored_connection(session, cid).pending_status == "account_change")
    with transaction() as s:
        pending = status.connection_status(s, demo.workspace_id).pending
    assert pending is not None
    assert pending.rotations is not None
    assert {r.name: r.outcome for r in pending.rotations} == {
        "primary rotation": "made_manual",
        "euro rotation": "stays_bound",
    }

    with transaction() as s:
        account_change.confirm(s, actor)
    wait_until(session, lambda: succeeded_sync(session, cid, 2))
    conn = stored_connection(session, cid)
    assert (conn.status, conn.api_key, conn.pagerduty_subdomain) == ("connected", new, "euco")
    modes = dict(
        session.execute(
            select(Rotation.name, Rotation.pagerduty_schedule_id).where(
                Rotation.workspace_id == demo.workspace_id
            )
        ).all()
    )
    assert modes == {"primary rotation": None, "euro rotation": "PSEUDAY", "hand-made": None}

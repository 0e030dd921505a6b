"""'Log in again with OAuth' over a connected workspace, run by real workers against the
simulator: the finding of issue 19 (a wrong client secret made the connection invalid within
seconds, the working credentials gone, "sync now" 409, bound rotations frozen) cannot happen;
a right login replaces the live credentials. The cases one by one run in-process in
tests/integration/workers/connections/test_pending_login.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Member, Role, Rotation
from pagerduty_sim.server import SimulatorHandle
from tests.support.connections import (
    log_in_with_oauth,
    stored_connection,
    succeeded_sync,
    wait_until,
)
from tests.support.stack import demo_oauth_app
from tests.support.sync import arrange_demo
from workers.connections import messages
from workers.core.access import Actor
from workers.core.db import transaction
from workers.sync.request import sync_now

pytestmark = pytest.mark.integration


def test_a_relogin_with_a_wrong_secret_keeps_the_connection_and_a_right_one_replaces_it(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    demo = arrange_demo(session, sim, oauth=True)
    cid = demo.connection_id
    alice = demo.members["alice"]
    # The callback checks that whoever started the login may still manage integrations.
    session.execute(update(Member).where(Member.id == alice).values(role=Role.ADMIN))
    session.commit()
    actor = Actor(demo.workspace_id, alice, Role.ADMIN)
    old_token = stored_connection(session, cid).access_token
    app = demo_oauth_app(sim)

    log_in_with_oauth(actor, app["client_id"], "not-the-app-secret")
    conn = wait_until(
        session,
        lambda: (
            (c := stored_connection(session, cid)).pending_status not in (None, "checking") and c
        ),
    )
    assert (conn.status, conn.generation, conn.access_token) == ("connected", 1, old_token)
    assert conn.pending_status == "rejected"
    assert conn.pending_message == messages.pending_login_rejected(messages.CLIENT_REFUSED)
    # "sync now" is accepted and the old tokens sync; bound rotations stay bound.
    with transaction() as s:
        sync_now(s, actor)
    wait_until(session, lambda: succeeded_sync(session, cid, 1))
    modes = session.scalars(select(Rotation.mode).where(Rotation.workspace_id == demo.workspace_id))
    assert sorted(modes) == ["manual", "pagerduty", "pagerduty", "pagerduty"]

    # Logging in again with the stored app (nothing typed) replaces the live credentials.
    log_in_with_oauth(actor)
    # Generation 3: the rejected login's check had 2, and no generation is handed out twice.
    conn = wait_until(session, lambda: (c := stored_connection(session, cid)).generation == 3 and c)
    assert (conn.status, conn.auth_method, conn.pending_status) == ("connected", "oauth", None)
    assert conn.access_token != old_token
    wait_until(session, lambda: succeeded_sync(session, cid, 3))

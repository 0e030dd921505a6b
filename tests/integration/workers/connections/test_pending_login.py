"""'Log in again with OAuth' over a connected connection (workers/connections/pending_login.py),
end to end against the simulator in this process: the API's start and callback, the browser's
consent (the simulator approves), then the exchange task's function. The login waits beside
the live credentials, which keep serving, and replaces them only once proven."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AuditEvent, OAuthAuthorization, PagerDutyConnection, Role, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.connections import log_in_with_oauth
from tests.support.outbox import CommittedTasks, as_flat, paused_outbox
from tests.support.stack import demo_api_key, demo_oauth_app
from workers.connections import messages, oauth_exchange, setup, status
from workers.core import connection_rows
from workers.core.access import Actor
from workers.core.db import transaction
from workers.deadlines.drive import MAX_VALIDATION_DRIVES, run_round
from workers.sync import run
from workers.sync.request import sync_now

# New SQL paths (staging, the deadlines loop's pending exchange): on both databases.
pytestmark = pytest.mark.both_databases

JWKS_PATH = "/identity/global/oauth/anonymous/jwks"


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    """What was enqueued, never published: no live worker runs the syncs these tests start."""
    with paused_outbox():
        yield CommittedTasks(as_flat)


def _admin(session: Session) -> Actor:
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    session.commit()
    return Actor(ws.id, admin.id, Role.ADMIN)


def _connection(session: Session, actor: Actor) -> PagerDutyConnection:
    session.expire_all()
    conn = connection_rows.live_connection(session, actor.workspace_id)
    assert conn is not None
    return conn


def _connected_with_oauth(
    session: Session, sim: SimulatorHandle
) -> tuple[Actor, PagerDutyConnection]:
    actor = _admin(session)
    app = demo_oauth_app(sim)
    aid = log_in_with_oauth(actor, app["client_id"], app["client_secret"])
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "connected"
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.auth_method) == ("connected", 1, "oauth")
    return actor, conn


def _logins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OAuthAuthorization)) or 0


def test_a_relogin_with_a_wrong_client_secret_leaves_the_connection_connected_and_syncing(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    old_token = conn.access_token
    app = demo_oauth_app(sim)

    aid = log_in_with_oauth(actor, app["client_id"], "not-the-app-secret")
    checking = _connection(session, actor)
    assert (checking.status, checking.generation, checking.auth_method) == ("connected", 1, "oauth")
    waiting = status.pending_document(checking)
    assert waiting is not None
    assert waiting.auth_method == "oauth"
    assert waiting.status == "checking"
    with transaction() as s:
        sync_now(s, actor)  # not 409: the live connection keeps serving

    result = oauth_exchange.exchange_oauth_code(aid)

    assert result.outcome == "pending_rejected"
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.auth_method) == ("connected", 1, "oauth")
    assert conn.access_token == old_token
    assert conn.oauth_client_secret == app["client_secret"]  # the working app is kept
    assert conn.last_error is None
    doc = status.connection_status(session, actor.workspace_id)
    assert doc.status == "connected"
    assert doc.pending is not None
    assert doc.pending.status == "rejected"
    assert doc.pending.auth_method == "oauth"
    assert doc.pending.message == messages.pending_login_rejected(messages.CLIENT_REFUSED)
    assert doc.pending.message.startswith(
        "The new OAuth login was rejected; Round Robin still uses the previous credentials."
    )
    assert _logins(session) == 0  # its client secret and verifier are gone
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at)).all()
    assert actions[-1] == "pagerduty.pending.rejected"
    # Syncing goes on with the old tokens.
    assert run.sync_once(conn.id, kind="manual").status == "succeeded"
    # A second delivery of the exchange changes nothing.
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "stale"


def test_a_relogin_reusing_the_stored_app_is_swapped_in_and_generation_moves(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    old_token = conn.access_token
    syncs_before = sum(1 for m in published if m["name"] == "pagerduty.sync_connection")

    aid = log_in_with_oauth(actor)  # no client id or secret: the stored app's
    login = session.get(OAuthAuthorization, aid)
    assert login is not None
    assert login.client_id == demo_oauth_app(sim)["client_id"]
    assert _connection(session, actor).pending_generation == 2

    result = oauth_exchange.exchange_oauth_code(aid)

    assert result.outcome == "pending_accepted"
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.auth_method) == ("connected", 2, "oauth")
    assert conn.access_token not in (None, old_token)
    assert conn.oauth_client_id == demo_oauth_app(sim)["client_id"]
    assert conn.oauth_client_secret == demo_oauth_app(sim)["client_secret"]
    assert conn.pagerduty_subdomain == "acme"
    assert set((conn.granted_scopes or "").split()) >= {"users.read", "schedules.read"}
    assert conn.pending_status is None
    assert status.connection_status(session, actor.workspace_id).pending is None
    assert _logins(session) == 0
    syncs = [m for m in published if m["name"] == "pagerduty.sync_connection"]
    assert len(syncs) == syncs_before + 1
    assert syncs[-1]["kind"] == "initial"
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at)).all()
    assert actions[-1] == "pagerduty.pending.accepted"
    assert run.sync_once(conn.id, kind="manual").status == "succeeded"


def test_a_relogin_over_an_api_key_connection_is_checked_beside_it_then_swapped_in(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor = _admin(session)
    with transaction() as s:
        setup.set_api_key(s, actor, demo_api_key(sim))
    from workers.connections import activation

    conn = _connection(session, actor)
    assert activation.validate_api_key(conn.id, conn.generation).outcome == "connected"
    app = demo_oauth_app(sim)

    aid = log_in_with_oauth(actor, app["client_id"], app["client_secret"])
    checking = _connection(session, actor)
    assert (checking.status, checking.auth_method, checking.api_key) == (
        "connected",
        "api_key",
        demo_api_key(sim),
    )
    assert checking.pending_auth_method == "oauth"

    assert oauth_exchange.exchange_oauth_code(aid).outcome == "pending_accepted"
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.auth_method) == ("connected", 2, "oauth")
    assert conn.api_key is None
    assert conn.key_level is None
    assert conn.access_token is not None


def test_a_relogin_of_another_account_is_set_aside(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    with transaction() as s:
        live = s.get(PagerDutyConnection, conn.id)
        assert live is not None
        live.pagerduty_subdomain = "otherco"  # as if the live one were another account's
    old_token = conn.access_token

    result = oauth_exchange.exchange_oauth_code(log_in_with_oauth(actor))

    assert result.outcome == "pending_account_change"
    conn = _connection(session, actor)
    assert (conn.generation, conn.access_token, conn.pending_status) == (
        1,
        old_token,
        "account_change",
    )
    assert conn.pending_message == messages.pending_login_account_change("otherco", "acme")
    assert _logins(session) == 0
    # Unlike a key of another account, nothing waits to be confirmed.
    doc = status.connection_status(session, actor.workspace_id).pending
    assert doc is not None
    assert (doc.status, doc.auth_method, doc.account) == ("account_change", "oauth", None)
    from workers.connections import account_change
    from workers.core.access import Conflict

    with transaction() as s, pytest.raises(Conflict) as refused:
        account_change.confirm(s, actor)
    assert refused.value.code == "not_account_change"


def test_a_pending_login_whose_exchange_is_lost_is_driven_again_from_the_database(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, _conn = _connected_with_oauth(session, sim)
    aid = log_in_with_oauth(actor)  # its exchange message is lost: nothing runs it

    assert run_round(utcnow() + timedelta(minutes=1)).driven == {"pending": 1}
    assert published[-1] == {"name": "pagerduty.exchange_oauth_code", "authorization_id": str(aid)}
    assert _connection(session, actor).pending_drives == 1
    # The driven exchange finishes the login.
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "pending_accepted"
    assert _connection(session, actor).generation == 2
    assert run_round(utcnow() + timedelta(minutes=5)).claimed == 0


def test_a_pending_login_never_exchanged_ends_lost_the_live_one_untouched(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    old_token = conn.access_token
    log_in_with_oauth(actor)

    now = utcnow()
    for _ in range(MAX_VALIDATION_DRIVES):
        now += timedelta(minutes=1)
        assert run_round(now).driven == {"pending": 1}
    now += timedelta(minutes=1)
    assert run_round(now).ended_invalid == 1

    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.access_token) == ("connected", 1, old_token)
    assert conn.pending_status == "lost"
    assert conn.pending_message == messages.pending_login_lost(messages.CHECK_LOST)
    assert conn.pending_drive_at is None
    assert _logins(session) == 0
    assert run_round(now + timedelta(minutes=5)).claimed == 0


def test_a_pending_login_whose_exchange_took_the_code_and_died_ends_lost(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    aid = log_in_with_oauth(actor)
    with transaction() as s:
        login = s.get(OAuthAuthorization, aid)
        assert login is not None
        login.code = None  # an exchange took it, then its process was killed

    assert run_round(utcnow() + timedelta(minutes=1)).ended_invalid == 1
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.pending_status) == ("connected", 1, "lost")
    assert _logins(session) == 0


def test_giving_up_on_a_pending_login_ends_lost_and_deletes_its_kept_tokens(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, conn = _connected_with_oauth(session, sim)
    old_token = conn.access_token
    aid = log_in_with_oauth(actor)
    sim.control.post(
        "/faults", json={"kind": "error", "path_prefix": JWKS_PATH, "status": 503}
    ).raise_for_status()
    with pytest.raises(oauth_exchange.VerificationPending):
        oauth_exchange.exchange_oauth_code(aid)
    checking = _connection(session, actor)
    assert checking.pending_status == "checking"
    assert checking.pending_drive_at is not None
    assert checking.pending_drive_at > utcnow()

    assert oauth_exchange.give_up_login(aid).outcome == "pending_lost"
    conn = _connection(session, actor)
    assert (conn.status, conn.generation, conn.access_token) == ("connected", 1, old_token)
    assert conn.pending_status == "lost"
    assert _logins(session) == 0


def test_over_a_broken_connection_a_relogin_replaces_directly(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    from models import ConnectionStatus
    from workers.events import transition

    actor, conn = _connected_with_oauth(session, sim)
    with transaction() as s:
        live = s.get(PagerDutyConnection, conn.id)
        assert live is not None
        transition(s, live, ConnectionStatus.NEEDS_REAUTH, error=messages.REAUTH)

    aid = log_in_with_oauth(actor)  # the stored app, as the panel's "Log in again" does
    validating = _connection(session, actor)
    assert (validating.status, validating.generation) == ("validating", 2)
    assert validating.pending_status is None
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "connected"
    assert _connection(session, actor).status == "connected"


def test_a_discarded_pending_login_goes_with_its_secrets_and_its_exchange_is_stale(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    from workers.connections import pending

    actor, conn = _connected_with_oauth(session, sim)
    aid = log_in_with_oauth(actor)
    with transaction() as s:
        pending.discard(s, actor)
    assert _logins(session) == 0
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "stale"
    conn = _connection(session, actor)
    assert (conn.generation, conn.pending_status) == (1, None)


def test_a_new_api_key_supersedes_a_pending_login(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    actor, _ = _connected_with_oauth(session, sim)
    aid = log_in_with_oauth(actor)
    with transaction() as s:
        setup.set_api_key(s, actor, demo_api_key(sim))
    checking = _connection(session, actor)
    assert (checking.pending_auth_method, checking.pending_generation) == ("api_key", 3)
    assert _logins(session) == 0
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "stale"
    assert _connection(session, actor).pending_status == "checking"  # the key's check


def test_a_pending_login_whose_connection_breaks_meanwhile_is_stale_and_goes(
    session: Session, sim: SimulatorHandle, published: CommittedTasks
) -> None:
    from models import ConnectionStatus
    from workers.events import transition

    actor, conn = _connected_with_oauth(session, sim)
    aid = log_in_with_oauth(actor)
    with transaction() as s:
        live = s.get(PagerDutyConnection, conn.id)
        assert live is not None
        transition(s, live, ConnectionStatus.NEEDS_REAUTH, error=messages.REAUTH)
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "stale"
    assert _logins(session) == 0
    assert _connection(session, actor).status == "needs_reauth"

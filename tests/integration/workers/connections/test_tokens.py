"""OAuth token upkeep against the simulator: refresh ahead of expiry, single-flight, no lock-out."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import processes
from tests.support.secrets import stored_ciphertext
from workers.connections import oauth_exchange, tokens
from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.errors import Transient
from workers.tasking.app import app

# The token refresh, on both databases; the clock lane runs it at other hours too.
pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

TOKEN_PATH = "/identity/oauth/token"


@pytest.fixture(autouse=True)
def _no_first_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests own the connection's tokens: the first sync a connect enqueues would use
    (and, when a test expires them, refresh or give up on) the same tokens concurrently."""
    monkeypatch.setattr("workers.connections.activation.enqueue", lambda *a, **k: "not-enqueued")


def _connected_oauth(session: Session, sim: SimulatorHandle) -> PagerDutyConnection:
    from tests.support.connections import pending_oauth_login

    conn, auth = pending_oauth_login(session, sim)
    assert oauth_exchange.exchange_oauth_code(auth.id).outcome == "connected"
    session.expire_all()
    return session.get(PagerDutyConnection, conn.id)


def _token_requests(sim: SimulatorHandle) -> int:
    return sim.control.get("/stats").json()["by_path"].get(TOKEN_PATH, 0)


def _expire_now(session: Session, sim: SimulatorHandle, conn: PagerDutyConnection) -> None:
    """The access token expires at PagerDuty and our record says so."""
    sim.control.post("/tokens/expire", json={"app": "demo-oauth", "kind": "access"})
    conn.access_token_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()


def _works(cred: tokens.ConnectionCredential) -> bool:
    PagerDutyClient(cred.api_base_url, cred.credential).probe()
    return True


def test_valid_token_is_used_without_a_refresh(session: Session, sim: SimulatorHandle) -> None:
    conn = _connected_oauth(session, sim)
    before = _token_requests(sim)
    cred = tokens.credential_for(conn.id)
    assert cred.credential.kind == "oauth"
    assert _works(cred)
    assert _token_requests(sim) == before


def test_token_that_expired_between_syncs_is_refreshed_and_committed_first(
    session: Session, sim: SimulatorHandle
) -> None:
    conn = _connected_oauth(session, sim)
    old_access = conn.access_token
    old_refresh = conn.refresh_token
    _expire_now(session, sim, conn)
    cred = tokens.credential_for(conn.id)
    assert cred.credential.secret != old_access
    assert _works(cred)
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    # The rotated refresh token is stored; the used one is dead at PagerDuty.
    assert stored.refresh_token != old_refresh
    assert stored.access_token == cred.credential.secret
    assert stored.access_token_expires_at > utcnow() + timedelta(hours=12)


def test_a_401_forces_one_refresh_and_other_callers_reuse_it(
    session: Session, sim: SimulatorHandle
) -> None:
    conn = _connected_oauth(session, sim)
    first = tokens.credential_for(conn.id)
    sim.control.post("/tokens/expire", json={"app": "demo-oauth", "kind": "access"})
    before = _token_requests(sim)
    fresh = tokens.credential_for(conn.id, rejected=first.credential)
    again = tokens.credential_for(conn.id, rejected=first.credential)
    assert fresh.credential.secret == again.credential.secret != first.credential.secret
    assert _token_requests(sim) - before == 1


def test_refused_refresh_moves_to_needs_reauth(session: Session, sim: SimulatorHandle) -> None:
    conn = _connected_oauth(session, sim)
    sim.control.post("/tokens/revoke", json={"app": "demo-oauth"}).raise_for_status()
    _expire_now(session, sim, conn)
    with pytest.raises(tokens.NeedsReauth):
        tokens.credential_for(conn.id)
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert stored.status == "needs_reauth"
    assert "Log in with OAuth 2.0 again" in stored.last_error
    with pytest.raises(tokens.ConnectionUnavailable):
        tokens.credential_for(conn.id)


def test_transient_refresh_failure_keeps_the_refresh_token(
    session: Session, sim: SimulatorHandle
) -> None:
    conn = _connected_oauth(session, sim)
    refresh_before = stored_ciphertext(session, conn, "refresh_token")
    _expire_now(session, sim, conn)
    sim.control.post(
        "/faults", json={"kind": "error", "path_prefix": TOKEN_PATH, "status": 503}
    ).raise_for_status()
    with pytest.raises(Transient):
        tokens.credential_for(conn.id)
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert (stored.status, stored_ciphertext(session, stored, "refresh_token")) == (
        "connected",
        refresh_before,
    )
    sim.control.delete("/faults").raise_for_status()
    assert _works(tokens.credential_for(conn.id))


def test_api_key_401_is_final(session: Session, sim: SimulatorHandle) -> None:
    from tests.support import factories
    from workers.pagerduty.errors import InvalidCredentials

    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, api_key="u+someKey")
    session.commit()
    cred = tokens.credential_for(conn.id)
    with pytest.raises(InvalidCredentials):
        tokens.credential_for(conn.id, rejected=cred.credential)


@pytest.mark.integration
def test_fifty_concurrent_tasks_refresh_exactly_once(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    """50 tasks across processes all need the token that just expired: one refresh request
    reaches PagerDuty, everyone ends with the same working token, nobody is locked out."""
    conn = _connected_oauth(session, sim)
    _expire_now(session, sim, conn)
    before = _token_requests(sim)
    with (
        processes.worker("interactive", concurrency=25, pool="threads"),
        processes.worker("interactive", concurrency=25, pool="threads"),
    ):
        results = [
            app.send_task(
                "pagerduty.refresh_token",
                kwargs={"connection_id": str(conn.id)},
                task_id=str(uuid.uuid4()),
            )
            for _ in range(50)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(r.ready() for r in results):
            time.sleep(0.2)
        outcomes = [r.get(timeout=1) for r in results]
    assert {o["outcome"] for o in outcomes} == {"valid"}
    assert _token_requests(sim) - before == 1
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert stored.status == "connected"
    assert _works(tokens.credential_for(conn.id))
    # And the stored refresh token still works: the customer is not locked out.
    stored.access_token_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert _works(tokens.credential_for(conn.id))

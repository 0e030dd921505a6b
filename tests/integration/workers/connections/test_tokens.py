"""OAuth token upkeep across worker processes: single-flight, no lock-out.

Refresh ahead of expiry, rotation, a revoked grant and a token endpoint that does not answer are
unit tests against the in-process identity host (tests/unit/workers/connections/test_tokens.py).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import processes
from workers.connections import oauth_exchange, tokens
from workers.pagerduty.client import PagerDutyClient
from workers.tasking.app import app

# The token refresh, on both databases; the clock lane runs it at other hours too.
pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

TOKEN_PATH = "/identity/oauth/token"


@pytest.fixture
def _no_first_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test owns the connection's tokens: the first sync a connect enqueues would run in the
    live workers and use (or refresh) the same tokens concurrently."""
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
@pytest.mark.usefixtures("_no_first_sync")
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

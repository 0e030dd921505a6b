"""A worker SIGKILLed in the middle of an OAuth exchange or a token refresh.

The broker redelivers an unacknowledged message once its visibility timeout passes (20
minutes in production; ``workers.tasking.redelivery`` returns it sooner). The tests stand in for
that wait by sending the same task id again to a fresh worker, which is exactly what the
redelivered message is. A message never redelivered is ended by the connection's deadline
(``workers.deadlines``).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import processes
from tests.support.connections import pending_oauth_login
from workers.connections import oauth_exchange
from workers.deadlines.drive import run_round

pytestmark = pytest.mark.integration
TOKEN_PATH = "/identity/oauth/token"


def _token_requests(sim: SimulatorHandle) -> int:
    return sim.control.get("/stats").json()["by_path"].get(TOKEN_PATH, 0)


def _slow_token_endpoint(sim: SimulatorHandle) -> None:
    sim.control.post(
        "/faults", json={"kind": "latency", "path_prefix": TOKEN_PATH, "latency_ms": 3000}
    ).raise_for_status()


def _kill_once_request_arrives(sim: SimulatorHandle, proc, before: int) -> None:
    deadline = time.monotonic() + 30
    while _token_requests(sim) == before:
        assert time.monotonic() < deadline, "the worker never called the token endpoint"
        time.sleep(0.02)
    processes.kill_hard(proc)


def _status(session: Session, cid) -> PagerDutyConnection:
    session.expire_all()
    return session.get(PagerDutyConnection, cid)


def test_worker_killed_mid_exchange_never_leaves_validating(
    session: Session, sim: SimulatorHandle
) -> None:
    conn, auth = pending_oauth_login(session, sim)
    cid, task_id = conn.id, f"exchange-{auth.id}"
    _slow_token_endpoint(sim)
    before = _token_requests(sim)
    with processes.isolated_worker() as (proc, client):
        client.send_task(
            "pagerduty.exchange_oauth_code",
            kwargs={"authorization_id": str(auth.id)},
            task_id=task_id,
        )
        _kill_once_request_arrives(sim, proc, before)
    stored = _status(session, cid)
    assert stored.status == "validating"  # the crash left it mid-way
    # Taking the code set the exchange's deadline: its hard time limit and a little.
    assert stored.drive_at is not None
    assert stored.drive_at - auth.code_received_at <= timedelta(seconds=60)
    sim.control.delete("/faults").raise_for_status()
    with processes.isolated_worker() as (_proc, client):
        outcome = client.send_task(
            "pagerduty.exchange_oauth_code",
            kwargs={"authorization_id": str(auth.id)},
            task_id=task_id,
        ).get(timeout=30)
    # The redelivery cannot tell a dead taker from a slow one before the deadline: it leaves
    # the outcome to the deadline, which ends the wait (here driven at that instant).
    assert outcome["outcome"] == "stale"
    assert _status(session, cid).status == "validating"
    assert run_round(stored.drive_at).ended_invalid == 1
    conn = _status(session, cid)
    assert conn.status == "invalid"
    assert "log in with OAuth 2.0 again" in conn.last_error


def test_a_lost_redelivery_ends_at_the_exchanges_deadline(
    session: Session, sim: SimulatorHandle
) -> None:
    """Even if the message is never redelivered, the connection's deadline ends the wait."""
    conn, auth = pending_oauth_login(session, sim)
    _slow_token_endpoint(sim)
    before = _token_requests(sim)
    with processes.isolated_worker() as (proc, client):
        client.send_task("pagerduty.exchange_oauth_code", kwargs={"authorization_id": str(auth.id)})
        _kill_once_request_arrives(sim, proc, before)
    stored = _status(session, conn.id)
    assert stored.drive_at is not None
    assert run_round(stored.drive_at - timedelta(seconds=1)).claimed == 0  # not while it may run
    assert run_round(stored.drive_at).ended_invalid == 1
    assert _status(session, conn.id).status == "invalid"


def test_worker_killed_mid_refresh_ends_connected_or_needs_reauth(
    session: Session, sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No first sync: it would share (and could refresh) the tokens this test is watching.
    monkeypatch.setattr("workers.connections.activation.enqueue", lambda *a, **k: "not-enqueued")
    conn, auth = pending_oauth_login(session, sim)
    assert oauth_exchange.exchange_oauth_code(auth.id).outcome == "connected"
    stored = _status(session, conn.id)
    stored.access_token_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    _slow_token_endpoint(sim)
    before = _token_requests(sim)
    task_id = f"refresh-{conn.id}"
    with processes.isolated_worker() as (proc, client):
        client.send_task(
            "pagerduty.refresh_token", kwargs={"connection_id": str(conn.id)}, task_id=task_id
        )
        _kill_once_request_arrives(sim, proc, before)
    # The row lock died with the worker: the connection is untouched, still connected.
    assert _status(session, conn.id).status == "connected"
    sim.control.delete("/faults").raise_for_status()
    with processes.isolated_worker() as (_proc, client):
        outcome = client.send_task(
            "pagerduty.refresh_token", kwargs={"connection_id": str(conn.id)}, task_id=task_id
        ).get(timeout=30)
    final = _status(session, conn.id)
    # PagerDuty rotated the refresh token while our worker died before storing the new one:
    # the honest end is a clear request to log in again, never a silent broken state.
    assert (outcome["outcome"], final.status) in {
        ("valid", "connected"),
        ("needs_reauth", "needs_reauth"),
    }
    if final.status == "needs_reauth":
        assert "Log in with OAuth 2.0 again" in final.last_error

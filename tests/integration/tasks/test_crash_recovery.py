"""A worker SIGKILLed in the middle of an API-key validation, an OAuth exchange or a token refresh.

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
from tests.support.connections import pending_oauth_login, validating_key_connection
from tests.support.stack import demo_api_key
from workers.connections import activation, oauth_exchange
from workers.deadlines.drive import run_round
from workers.tasking.contract import VALIDATE_API_KEY

pytestmark = pytest.mark.integration
TOKEN_PATH = "/identity/oauth/token"
# Asked last, after the probe (a key) or once PagerDuty's tokens are kept (a login): a kill
# while it is slow lands after the work that matters and before the outcome is written.
ME_PATH = "/users/me"


def _token_requests(sim: SimulatorHandle, path: str = TOKEN_PATH) -> int:
    return sim.control.get("/stats").json()["by_path"].get(path, 0)


def _slow_token_endpoint(sim: SimulatorHandle, path: str = TOKEN_PATH) -> None:
    sim.control.post(
        "/faults", json={"kind": "latency", "path_prefix": path, "latency_ms": 3000}
    ).raise_for_status()


def _kill_once_request_arrives(sim: SimulatorHandle, proc, before: int, path=TOKEN_PATH) -> None:
    deadline = time.monotonic() + 30
    while _token_requests(sim, path) == before:
        assert time.monotonic() < deadline, f"the worker never called {path}"
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


# --- killed in the middle of work that must still converge to connected -------------------------


def _validate(client, cid, generation: int, task_id: str):  # type: ignore[no-untyped-def]
    return client.send_task(
        "pagerduty.validate_api_key",
        kwargs={"connection_id": str(cid), "generation": generation},
        task_id=task_id,
    )


def _killed_mid_validation(session: Session, sim: SimulatorHandle) -> tuple[object, int, str]:
    """A validation whose worker is SIGKILLed after PagerDuty accepted the key, before the
    outcome is written."""
    conn = validating_key_connection(session, demo_api_key(sim))
    cid, generation, task_id = conn.id, conn.generation, f"validate-{conn.id}"
    _slow_token_endpoint(sim, ME_PATH)
    before = _token_requests(sim, ME_PATH)
    with processes.isolated_worker() as (proc, client):
        _validate(client, cid, generation, task_id)
        _kill_once_request_arrives(sim, proc, before, ME_PATH)
    sim.control.delete("/faults").raise_for_status()
    stored = _status(session, cid)
    assert stored.status == "validating"  # the crash left it mid-way
    # The delivery pushed the deadline past its hard time limit when it started: the deadline
    # does not drive a second check while the first may still run.
    assert stored.drive_at is not None
    assert stored.drive_at - utcnow() > timedelta(seconds=VALIDATE_API_KEY.time_limit)
    return cid, generation, task_id


def test_worker_killed_mid_validation_ends_connected(
    session: Session, sim: SimulatorHandle
) -> None:
    cid, generation, task_id = _killed_mid_validation(session, sim)
    # The message comes back (workers.tasking.redelivery; here sent again with its id).
    with processes.isolated_worker() as (_proc, client):
        outcome = _validate(client, cid, generation, task_id).get(timeout=30)
    assert outcome["outcome"] == "connected"
    conn = _status(session, cid)
    assert conn.status == "connected"
    assert (conn.drive_at, conn.drives) == (None, 0)


def test_a_validation_killed_and_never_redelivered_is_driven_at_its_deadline(
    session: Session, sim: SimulatorHandle
) -> None:
    cid, generation, _task_id = _killed_mid_validation(session, sim)
    stored = _status(session, cid)
    # Issue 19's goal: a validation ends within 60 s of a crash even when its message is lost.
    assert stored.drive_at - utcnow() < timedelta(seconds=55)
    assert run_round(stored.drive_at - timedelta(seconds=1)).claimed == 0
    assert run_round(stored.drive_at).driven == {"validating": 1}
    # The driven task (published by the relay; run here in-process) connects.
    assert activation.validate_api_key(cid, generation).outcome == "connected"
    assert _status(session, cid).status == "connected"


def _killed_after_tokens_kept(session: Session, sim: SimulatorHandle) -> tuple[object, str]:
    """An exchange whose worker is SIGKILLed after PagerDuty issued the tokens (kept on the
    login) and before the connection is written."""
    conn, auth = pending_oauth_login(session, sim)
    task_id = f"exchange-{auth.id}"
    _slow_token_endpoint(sim, ME_PATH)
    before = _token_requests(sim, ME_PATH)
    with processes.isolated_worker() as (proc, client):
        client.send_task(
            "pagerduty.exchange_oauth_code",
            kwargs={"authorization_id": str(auth.id)},
            task_id=task_id,
        )
        _kill_once_request_arrives(sim, proc, before, ME_PATH)
    sim.control.delete("/faults").raise_for_status()
    assert _status(session, conn.id).status == "validating"
    session.refresh(auth)
    assert auth.code is None  # spent
    assert auth.issued_tokens is not None  # PagerDuty's answer, kept
    return conn.id, str(auth.id)


def test_worker_killed_after_the_tokens_were_kept_ends_connected(
    session: Session, sim: SimulatorHandle
) -> None:
    cid, aid = _killed_after_tokens_kept(session, sim)
    with processes.isolated_worker() as (_proc, client):
        outcome = client.send_task(
            "pagerduty.exchange_oauth_code",
            kwargs={"authorization_id": aid},
            task_id=f"exchange-{aid}",
        ).get(timeout=30)
    # No second code needed: the kept tokens are checked and the login connects.
    assert outcome["outcome"] == "connected"
    conn = _status(session, cid)
    assert conn.status == "connected"
    assert (conn.drive_at, conn.drives) == (None, 0)


def test_an_exchange_killed_after_the_tokens_were_kept_is_driven_at_its_deadline(
    session: Session, sim: SimulatorHandle
) -> None:
    cid, aid = _killed_after_tokens_kept(session, sim)
    stored = _status(session, cid)
    assert stored.drive_at is not None
    assert run_round(stored.drive_at - timedelta(seconds=1)).claimed == 0
    # The login holds tokens (not its code): driven again, not ended invalid.
    assert run_round(stored.drive_at).driven == {"validating": 1}
    assert oauth_exchange.exchange_oauth_code(aid).outcome == "connected"
    assert _status(session, cid).status == "connected"

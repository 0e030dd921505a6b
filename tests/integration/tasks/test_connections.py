"""Connect tasks run by real workers against the PagerDuty simulator: the message path, the
task's own retries, the deadline, OAuth code exchange. The API-key cases one by one (regions,
401/402/403, role notices, stale checks) run in-process in
tests/unit/workers/connections/test_activation.py."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    TaskRecord,
    utcnow,
)
from pagerduty_sim.server import SimulatorHandle
from tests.support.connections import pending_oauth_login, validating_key_connection
from tests.support.secrets import stored_ciphertext
from tests.support.stack import demo_api_key
from workers.connections import messages, oauth_exchange
from workers.deadlines.drive import run_round
from workers.tasking.app import app

pytestmark = pytest.mark.integration


def _wait_status(session: Session, cid: uuid.UUID, *, not_in: set[str], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.expire_all()
        conn = session.get(PagerDutyConnection, cid)
        if conn.status not in not_in:
            return conn
        time.sleep(0.1)
    raise AssertionError(f"connection still {conn.status} after {timeout}s")


def _validate(session: Session, conn: PagerDutyConnection) -> PagerDutyConnection:
    app.send_task(
        "pagerduty.validate_api_key",
        kwargs={"connection_id": str(conn.id), "generation": conn.generation},
    )
    return _wait_status(session, conn.id, not_in={ConnectionStatus.VALIDATING})


def test_valid_account_key_connects_and_starts_first_sync(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    conn = _validate(session, validating_key_connection(session, demo_api_key(sim)))
    assert conn.status == "connected"
    assert conn.key_level == "account"
    assert conn.pagerduty_subdomain == "acme"
    assert conn.last_error is None
    first_sync = session.scalars(
        select(TaskRecord).where(TaskRecord.workspace_id == conn.workspace_id)
    ).all()
    assert [t.task_name for t in first_sync] == ["pagerduty.sync_connection"]


def test_transient_errors_are_retried_then_succeed(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    # More failures than the client's own retries absorb: the task itself retries later.
    fault = {"kind": "error", "path_prefix": "/users", "status": 503, "times": 6}
    sim.control.post("/faults", json=fault).raise_for_status()
    conn = _validate(session, validating_key_connection(session, demo_api_key(sim)))
    assert conn.status == "connected"
    assert [f["hits"] for f in sim.control.get("/faults").json()["faults"]] == [6]


# --- OAuth ----------------------------------------------------------------------------------------


def _exchange(session: Session, auth: OAuthAuthorization) -> PagerDutyConnection:
    connection_id = auth.connection_id
    app.send_task("pagerduty.exchange_oauth_code", kwargs={"authorization_id": str(auth.id)})
    return _wait_status(session, connection_id, not_in={"validating"})


def test_oauth_exchange_connects_with_tokens_encrypted(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    conn, auth = pending_oauth_login(session, sim)
    auth_id = auth.id
    conn = _exchange(session, auth)
    assert conn.status == "connected", conn.last_error
    assert conn.pagerduty_account_id == "acme"
    assert conn.pagerduty_subdomain == "acme"
    assert conn.pagerduty_user_id == "PUALICE"
    assert conn.region == "us"
    assert conn.notice is None  # Alice is an admin: she sees everything
    assert {"users.read", "schedules.read"} <= set(conn.granted_scopes.split())
    assert stored_ciphertext(session, conn, "access_token").startswith("v1:")
    assert stored_ciphertext(session, conn, "refresh_token").startswith("v1:")
    assert conn.access_token_expires_at > utcnow() + timedelta(hours=12)
    assert conn.oauth_client_secret == "demo-client-secret"
    # The pending login (verifier, code) is gone once used.
    assert (
        session.scalar(select(OAuthAuthorization).where(OAuthAuthorization.id == auth_id)) is None
    )


@pytest.mark.parametrize("issuer", ["identity", "app"])
def test_oauth_login_connects_with_either_documented_issuer(
    session: Session, sim: SimulatorHandle, live_workers, issuer: str
) -> None:
    """PagerDuty's docs name two id_token issuers (identity.pagerduty.com now, app.pagerduty.com
    before and in its example tokens): a login signed with either connects."""
    sim.control.post("/settings", json={"id_token_issuer": issuer}).raise_for_status()
    conn, auth = pending_oauth_login(session, sim)
    conn = _exchange(session, auth)
    assert conn.status == "connected", conn.last_error
    assert conn.pagerduty_account_id == "acme"


def test_oauth_login_with_any_other_issuer_is_refused(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    other = f"{sim.base_url}/elsewhere/global/oauth/anonymous"
    sim.control.post("/settings", json={"id_token_issuer": other}).raise_for_status()
    conn, auth = pending_oauth_login(session, sim)
    conn = _exchange(session, auth)
    assert conn.status == "invalid"
    assert conn.last_error == messages.LOGIN_UNVERIFIED
    assert conn.access_token is None


JWKS_PATH = "/identity/global/oauth/anonymous/jwks"
TOKEN_PATH = "/identity/oauth/token"


def _fault_hits(sim: SimulatorHandle) -> list[int]:
    return [f["hits"] for f in sim.control.get("/faults").json()["faults"]]


@pytest.mark.parametrize("path", [TOKEN_PATH, JWKS_PATH])
def test_one_failed_oauth_call_during_a_login_is_tried_again(
    session: Session, sim: SimulatorHandle, live_workers, path: str
) -> None:
    """A 503 from the token endpoint (before it takes the code) or the JWKS is a blip: tried
    again within seconds, the login connects."""
    fault = {"kind": "error", "path_prefix": path, "status": 503, "times": 1}
    sim.control.post("/faults", json=fault).raise_for_status()
    conn, auth = pending_oauth_login(session, sim)
    conn = _exchange(session, auth)
    assert conn.status == "connected", conn.last_error
    assert _fault_hits(sim) == [1]


def test_a_login_whose_jwks_stays_down_for_a_while_ends_connected(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    """More JWKS failures than the call's own tries absorb, after PagerDuty issued the tokens:
    they were kept, so the task checks them again later (without the spent code) and connects
    instead of ending invalid with a 30-day refresh token orphaned at PagerDuty."""
    fault = {"kind": "error", "path_prefix": JWKS_PATH, "status": 503, "times": 4}
    sim.control.post("/faults", json=fault).raise_for_status()
    sim.control.post("/stats/reset").raise_for_status()
    conn, auth = pending_oauth_login(session, sim)
    auth_id = auth.id
    conn = _exchange(session, auth)
    assert conn.status == "connected", conn.last_error
    assert _fault_hits(sim) == [4]
    by_path = sim.control.get("/stats").json()["by_path"]
    assert by_path[TOKEN_PATH] == 1  # the code was exchanged once; the retry reused its tokens
    assert by_path[JWKS_PATH] == 5
    assert session.get(OAuthAuthorization, auth_id) is None


def test_oauth_eu_account_gets_its_region_from_the_id_token(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    conn, auth = pending_oauth_login(session, sim, "euco-oauth")
    conn = _exchange(session, auth)
    assert (conn.status, conn.region, conn.pagerduty_subdomain) == ("connected", "eu", "euco")


def test_code_used_after_30_seconds_is_refused(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    conn, auth = pending_oauth_login(session, sim)
    sim.control.post("/clock", json={"advance_seconds": 31}).raise_for_status()
    conn = _exchange(session, auth)
    assert conn.status == "invalid"
    assert "log in with OAuth 2.0 again" in conn.last_error


def test_app_lacking_a_scope_is_invalid_naming_the_scopes(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    # Asking for a scope the app was not registered with: PagerDuty silently grants only openid.
    conn, auth = pending_oauth_login(
        session, sim, scopes=("openid", "users.read", "schedules.read", "incidents.write")
    )
    conn = _exchange(session, auth)
    assert conn.status == "invalid"
    assert "PagerDuty granted only openid" in conn.last_error
    assert "missing: users.read, schedules.read" in conn.last_error
    # What to fix, and where: the app registration must list every scope we ask for.
    assert "App Registration" in conn.last_error
    assert "tick users.read, schedules.read, oncalls.read" in conn.last_error
    assert conn.access_token is None


def test_redelivered_exchange_after_a_crash_ends_with_a_clear_error(
    session: Session, sim: SimulatorHandle
) -> None:
    """A delivery that took the code and died: the retry cannot reuse the code, so the admin
    is told to log in again instead of the connection staying in validating. While the taker
    may still be running (its deadline, set with the code taken, is ahead) another delivery
    leaves the outcome to it."""
    conn, auth = pending_oauth_login(session, sim)
    auth.code = None  # what the first delivery's committed "take the code" leaves
    conn.drive_at = utcnow() + timedelta(seconds=oauth_exchange.EXCHANGE_RUNNING_SECONDS)
    session.commit()
    assert oauth_exchange.exchange_oauth_code(auth.id).outcome == "stale"
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "validating"

    conn = session.get(PagerDutyConnection, conn.id)
    conn.drive_at = utcnow() - timedelta(seconds=1)  # the taker's time is up: it died
    session.commit()
    result = oauth_exchange.exchange_oauth_code(auth.id)
    # The deadlines loop of any live worker in this test process sees the same passed deadline
    # and may end the validation first (workers/deadlines/drive.py, "the code is spent"): then
    # this delivery finds the login gone and answers stale. Either way the admin reads the same.
    assert result.outcome in ("invalid", "stale")
    session.expire_all()
    conn = session.get(PagerDutyConnection, conn.id)
    assert conn.status == "invalid"
    assert "log in with OAuth 2.0 again" in conn.last_error


def test_an_exchange_that_took_the_code_and_died_ends_at_its_deadline(
    session: Session, sim: SimulatorHandle
) -> None:
    # An hour ahead: only this round (not a live worker's deadlines loop) drives it.
    later = utcnow() + timedelta(hours=1)
    conn, auth = pending_oauth_login(session, sim)
    auth.code = None
    conn.drive_at = later
    session.commit()
    assert run_round(later).ended_invalid == 1
    session.expire_all()
    conn = session.get(PagerDutyConnection, conn.id)
    assert conn.status == "invalid"
    assert "log in with OAuth 2.0 again" in conn.last_error


def test_oauth_login_as_a_non_admin_says_it_sees_only_part_of_the_account(
    session: Session, sim: SimulatorHandle, live_workers
) -> None:
    conn, auth = pending_oauth_login(session, sim, "demo-oauth-bob")
    conn = _exchange(session, auth)
    assert conn.status == "connected", conn.last_error
    assert "Bob" in conn.notice
    assert "only what that user can see" in conn.notice

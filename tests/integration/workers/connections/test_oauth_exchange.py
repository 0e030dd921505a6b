"""An OAuth login's worker half against the simulator, in this process: tokens PagerDuty issued
are kept until their id_token is verified, so a JWKS that does not answer never loses them."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from models import OAuthAuthorization, PagerDutyConnection
from pagerduty_sim.server import SimulatorHandle
from tests.support.connections import pending_oauth_login
from tests.support.secrets import stored_ciphertext
from workers.connections import messages, oauth_exchange

JWKS_PATH = "/identity/global/oauth/anonymous/jwks"
TOKEN_PATH = "/identity/oauth/token"


@pytest.fixture(autouse=True)
def _no_first_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.connections.activation.enqueue", lambda *a, **k: "not-enqueued")


def _requests(sim: SimulatorHandle, path: str) -> int:
    return int(sim.control.get("/stats").json()["by_path"].get(path, 0))


def _jwks_down(sim: SimulatorHandle) -> None:
    fault = {"kind": "error", "path_prefix": JWKS_PATH, "status": 503}
    sim.control.post("/faults", json=fault).raise_for_status()


def test_a_jwks_outage_after_the_exchange_keeps_the_tokens_and_the_check_resumes(
    session: Session, sim: SimulatorHandle
) -> None:
    conn, auth = pending_oauth_login(session, sim)
    cid, auth_id = conn.id, auth.id
    _jwks_down(sim)
    with pytest.raises(oauth_exchange.VerificationPending):
        oauth_exchange.exchange_oauth_code(auth_id)
    assert _requests(sim, JWKS_PATH) == 3  # tried again within seconds first
    session.expire_all()
    kept = session.get(OAuthAuthorization, auth_id)
    assert kept is not None
    assert kept.code is None  # the code is spent
    assert (stored_ciphertext(session, kept, "issued_tokens") or "").startswith("v1:")
    assert session.get(PagerDutyConnection, cid).status == "validating"

    sim.control.delete("/faults").raise_for_status()
    assert oauth_exchange.exchange_oauth_code(auth_id).outcome == "connected"
    assert _requests(sim, TOKEN_PATH) == 1  # the code was exchanged once, its tokens reused
    session.expire_all()
    connected = session.get(PagerDutyConnection, cid)
    assert (connected.status, connected.pagerduty_account_id) == ("connected", "acme")
    assert connected.access_token is not None
    assert session.get(OAuthAuthorization, auth_id) is None


def test_giving_up_on_a_pending_check_ends_invalid_and_deletes_the_kept_tokens(
    session: Session, sim: SimulatorHandle
) -> None:
    conn, auth = pending_oauth_login(session, sim)
    cid, auth_id = conn.id, auth.id
    _jwks_down(sim)
    with pytest.raises(oauth_exchange.VerificationPending):
        oauth_exchange.exchange_oauth_code(auth_id)
    assert oauth_exchange.give_up_login(auth_id).outcome == "invalid"
    session.expire_all()
    ended = session.get(PagerDutyConnection, cid)
    assert (ended.status, ended.last_error) == ("invalid", messages.UNREACHABLE)
    assert session.get(OAuthAuthorization, auth_id) is None


def test_a_token_set_survives_its_encrypted_round_trip() -> None:
    from datetime import UTC, datetime

    from workers.pagerduty.oauth import TokenSet

    tokens = TokenSet(
        access_token="at",
        refresh_token="rt",
        token_type="bearer",
        expires_at=datetime(2026, 12, 8, 9, 0, tzinfo=UTC),
        scopes=frozenset({"openid", "users.read"}),
        id_token="a.b.c",
    )
    assert TokenSet.from_json(tokens.to_json()) == tokens

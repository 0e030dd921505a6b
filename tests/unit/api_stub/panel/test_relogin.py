"""The panel's "Log in again with OAuth": the stored app is used again unless another is
entered, and the modal says so (issue 20); the login is checked beside the live connection."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models import AuthMethod, ConnectionStatus, OAuthAuthorization, PagerDutyConnection
from tests.support import factories
from tests.support.api import act_as, csrf


def _oauth_connection(session, world, status: ConnectionStatus) -> PagerDutyConnection:
    conn = factories.api_key_connection(session, world.ws, status=status, by=world.owner)
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    conn.oauth_client_id = "stored-client-id"
    conn.oauth_client_secret = "stored-client-secret"
    session.commit()
    return conn


def _modal(page: str) -> str:
    start = page.index('<dialog id="oauth-modal"')
    return page[start : page.index("</dialog>", start)]


@pytest.mark.parametrize("status", ["connected", "invalid", "needs_reauth"])
def test_the_relogin_modal_uses_the_stored_app_and_keeps_the_bindings(
    client: TestClient, world, session, status
) -> None:
    _oauth_connection(session, world, ConnectionStatus(status))
    act_as(client, world.owner)
    modal = _modal(client.get("/panel").text)
    assert 'id="oauth-modal-title">Log in again with OAuth 2.0</h2>' in modal
    assert 'id="stored-oauth-app"' in modal
    assert "Rotations stay bound." in modal
    assert "<summary>Use a different app</summary>" in modal
    # Both may be left empty; the stored secret never reaches the page.
    assert re.search(r'<input id="client_id"[^>]*required', modal) is None
    assert re.search(r'<input id="client_secret"[^>]*required', modal) is None
    assert "stored-client-secret" not in modal


def test_a_first_login_still_asks_for_the_app(client: TestClient, world, session) -> None:
    factories.api_key_connection(session, world.ws, by=world.owner)  # an API key: no app
    session.commit()
    act_as(client, world.owner)
    modal = _modal(client.get("/panel").text)
    assert 'id="stored-oauth-app"' not in modal
    assert re.search(r'<input id="client_id"[^>]*required', modal) is not None


def test_saving_without_an_app_logs_in_with_the_stored_one(
    client: TestClient, world, session, sent
) -> None:
    _oauth_connection(session, world, ConnectionStatus.CONNECTED)
    act_as(client, world.owner)
    form = {"client_id": "", "client_secret": "", "region": "us", "csrf_token": csrf(client)}
    r = client.post("/panel/oauth", data=form)
    assert r.status_code == 303, r.text
    assert parse_qs(urlsplit(r.headers["location"]).query)["client_id"] == ["stored-client-id"]
    assert "stored-client-secret" not in r.headers["location"]
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization)).all()
    assert (auth.client_id, auth.client_secret) == ("stored-client-id", "stored-client-secret")
    assert sent.calls == []


@pytest.mark.parametrize("status", ["invalid", "needs_reauth"])
def test_a_broken_oauth_connection_offers_to_log_in_again(
    client: TestClient, world, session, status
) -> None:
    """The button the admin is told to use ("Log in with OAuth 2.0 again") says so; a broken
    API-key connection still offers a first OAuth login."""
    conn = _oauth_connection(session, world, ConnectionStatus(status))
    act_as(client, world.owner)
    button = 'data-open="oauth-modal" id="open-oauth">'
    assert f"{button}Log in again with OAuth 2.0</button>" in client.get("/panel").text
    conn.auth_method, conn.api_key = AuthMethod.API_KEY, "u+panelKeyBBBBBBBBBBB"
    session.commit()
    assert f"{button}Login using OAuth 2.0</button>" in client.get("/panel").text

"""The integrations panel (GET /panel and its forms) through the real app and database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api_stub.auth import issue_token
from api_stub.panel import page as panel_page
from api_stub.panel import session as panel
from models import (
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyUser,
    Rotation,
    RotationMode,
    RotationOnDuty,
    RotationSchedule,
    SyncRun,
    utcnow,
)
from tests.support import factories
from tests.support.api import act_as, csrf
from workers.core.settings import get_settings, reset_settings_cache

KEY = "u+panelKeyAAAAAAAAAAA"


def post(client: TestClient, path: str, data: dict[str, str] | None = None):
    return client.post(path, data={**(data or {}), "csrf_token": csrf(client)})


def _live(session, world) -> PagerDutyConnection | None:
    session.expire_all()
    return session.scalars(
        select(PagerDutyConnection).where(
            PagerDutyConnection.workspace_id == world.ws.id,
            PagerDutyConnection.status != ConnectionStatus.DISCONNECTED,
        )
    ).one_or_none()


def _connected(session, world, *, with_schedule: bool = True) -> PagerDutyConnection:
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    conn.pagerduty_subdomain = "acme"
    if with_schedule:
        session.add(
            PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary On-Call")
        )
    session.commit()
    if with_schedule:
        # Mirrored schedules mean a sync has run (the page refreshes until the first one has).
        _run(session, conn, minutes_ago=1)
    return conn


# --- rendering ----------------------------------------------------------------------------------


def test_without_a_session_the_panel_offers_the_member_picker_only(client, world) -> None:
    page = client.get("/panel")
    assert page.status_code == 200
    assert "Who are you?" in page.text
    assert 'id="member-picker"' in page.text
    assert "Olive Owner" in page.text
    assert "Mo Member" in page.text
    assert "Login using an API Key" not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_admin_sees_the_connect_buttons_and_modals(client, world) -> None:
    act_as(client, world.owner)
    page = client.get("/panel")
    assert "You are now acting as Olive Owner (Primary Owner)." in page.text
    assert 'id="acting-as">Olive Owner' in page.text
    assert "Login using an API Key" in page.text
    assert "Login using OAuth 2.0" in page.text
    assert 'id="api-key-modal"' in page.text
    assert 'id="oauth-modal"' in page.text
    assert "Client Secret" in page.text
    # The flash message is shown once.
    assert "You are now acting as" not in client.get("/panel").text


def test_member_sees_neither_connect_nor_disconnect(client, world, session) -> None:
    act_as(client, world.member)
    page = client.get("/panel").text
    assert "Login using an API Key" not in page
    assert "Login using OAuth 2.0" not in page
    assert "Only the workspace's Primary Owner or an Admin can connect PagerDuty." in page
    _connected(session, world)
    page = client.get("/panel").text
    assert "Connected to PagerDuty" in page
    assert "Disconnect from PagerDuty" not in page
    assert 'id="disconnect-modal"' not in page
    assert "Sync now" not in page
    assert "/panel/rotations/" not in page  # no bind / make-manual forms


def test_connected_admin_sees_disconnect_behind_the_connected_button(
    client, world, session
) -> None:
    _connected(session, world)
    act_as(client, world.admin)
    page = client.get("/panel").text
    assert 'id="connected-button">✓ Connected to PagerDuty' in page
    assert "Disconnect from PagerDuty" in page
    assert 'id="confirm-disconnect">Confirm' in page
    assert "Sync now" in page
    assert "acme (US)" in page
    assert '<meta http-equiv="refresh"' not in page


def test_rotations_show_mode_members_on_duty_and_unmatched_people(client, world, session) -> None:
    conn = _connected(session, world)
    bound = factories.rotation(session, world.ws, [world.owner, world.admin], name="Primary")
    bound.mode = RotationMode.PAGERDUTY
    bound.pagerduty_schedule_id = "PSPRIMA"
    bound.bound_at = bound.last_synced_at = utcnow()
    session.add(RotationOnDuty(rotation_id=bound.id, member_id=world.admin.id))
    session.add(
        PagerDutyUser(
            connection_id=conn.id,
            pagerduty_id="PUCONTR",
            name="Casey Contractor",
            email="contractor@outside.example",
            email_key="contractor@outside.example",
        )
    )
    session.add(
        PagerDutyOnCall(
            connection_id=conn.id, schedule_pagerduty_id="PSPRIMA", user_pagerduty_id="PUCONTR"
        )
    )
    factories.rotation(session, world.ws, [world.member], name="Front <b>Desk</b>")
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    row = page[page.index('data-rotation="Primary"') :]
    row = row[: row.index("</tr>")]
    assert "PagerDuty" in row
    assert "Primary On-Call" in row
    assert "Olive Owner, Ada Admin" in row
    assert "<b>Ada Admin</b>" in row  # on duty
    assert "Casey Contractor &lt;contractor@outside.example&gt;" in row
    assert "Make Manual" in row
    manual = page[page.index("Front &lt;b&gt;Desk&lt;/b&gt;") :]  # names are escaped
    assert "Manual" in manual[: manual.index("</tr>")]


def test_validating_connection_auto_refreshes(client, world, session) -> None:
    factories.api_key_connection(session, world.ws, status=ConnectionStatus.VALIDATING)
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "Connecting to PagerDuty" in page


def test_invalid_connection_shows_the_error_in_plain_words(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.INVALID)
    conn.last_error = "PagerDuty rejected this API key (401). Check the key and try again."
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert "PagerDuty rejected this API key (401)" in page
    assert "Login using an API Key" in page  # try again


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("pagerduty=denied", "access was denied"),
        ("pagerduty=error&reason=state_expired", "took too long and expired"),
        ("pagerduty=error&reason=%3Cscript%3E", "did not complete"),
        ("pagerduty=connecting&task_id=x", "Finishing the connection"),
    ],
)
def test_oauth_return_is_explained(client, world, query, words) -> None:
    act_as(client, world.owner)
    page = client.get(f"/panel?{query}").text
    assert words in page
    assert "<script>" not in page.replace("<script nonce=", "")


# --- CSRF ---------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_changes_nothing(client, world, session, sent):
    act_as(client, world.owner)
    r = client.post("/panel/api-key", data={"api_key": KEY})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"
    assert _live(session, world) is None
    assert sent.calls == []


def test_post_with_a_forged_or_foreign_token_is_refused(client, world, session, sent) -> None:
    act_as(client, world.owner)
    for token in ("0" * 64, panel.csrf_token_for("another-nonce", "anonymous")):
        r = client.post("/panel/api-key", data={"api_key": KEY, "csrf_token": token})
        assert r.status_code == 403, token
    # A token minted for another identity with the same cookie nonce does not work either.
    nonce = client.cookies.get(panel.CSRF_COOKIE)
    other = panel.csrf_token_for(nonce, f"{world.ws.id}:{world.member.id}")
    r = client.post("/panel/api-key", data={"api_key": KEY, "csrf_token": other})
    assert r.status_code == 403
    assert _live(session, world) is None
    assert sent.calls == []


def test_cross_site_post_is_refused_even_with_the_cookie(client, world, session, sent) -> None:
    """A browser sends cookies but the attacker's page cannot read the token; and a post from
    another origin is refused even with a valid token."""
    act_as(client, world.owner)
    token = csrf(client)
    r = client.post(
        "/panel/disconnect",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"
    r = client.post("/panel/act-as", data={"member_id": str(world.member.id)})
    assert r.status_code == 403
    assert sent.calls == []


def test_form_post_without_a_session_is_401(client, world, sent) -> None:
    r = post(client, "/panel/api-key", {"api_key": KEY})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert sent.calls == []


# --- actions ------------------------------------------------------------------------------------


def test_api_key_form_connects_and_enqueues_validation(client, world, session, sent) -> None:
    act_as(client, world.owner)
    r = post(client, "/panel/api-key", {"api_key": KEY, "region": "us"})
    assert r.status_code == 303
    assert r.headers["location"] == "/panel"
    conn = _live(session, world)
    assert conn is not None
    assert conn.status == "validating"
    assert conn.connected_by_member_id == world.owner.id
    assert sent.names() == ["pagerduty.validate_api_key"]
    assert sent.calls[0]["kwargs"]["connection_id"] == str(conn.id)
    page = client.get("/panel").text
    assert "API key saved. Checking it with PagerDuty..." in page
    assert KEY not in page


def test_bad_api_key_is_explained_and_nothing_is_enqueued(client, world, session, sent) -> None:
    act_as(client, world.owner)
    r = post(client, "/panel/api-key", {"api_key": "short"})
    assert r.status_code == 303
    page = client.get("/panel").text
    assert "That does not look like a PagerDuty API key" in page
    assert "api_key must be" not in page  # the API's words, not the admin's
    assert _live(session, world) is None
    assert sent.calls == []


def test_member_cannot_connect_through_a_crafted_form(client, world, session, sent) -> None:
    act_as(client, world.member)
    r = post(client, "/panel/api-key", {"api_key": KEY})
    assert r.status_code == 303
    assert "Only the workspace's Primary Owner or an Admin" in client.get("/panel").text
    assert _live(session, world) is None
    assert sent.calls == []


def test_oauth_form_sends_the_browser_to_the_consent_page(client, world, session, sent) -> None:
    act_as(client, world.admin)
    r = post(client, "/panel/oauth", {"client_id": "cid", "client_secret": "sec", "region": "us"})
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    settings = get_settings()
    assert r.headers["location"].startswith(f"{settings.pagerduty_identity_url}/oauth/authorize")
    q = parse_qs(target.query)
    assert q["client_id"] == ["cid"]
    assert q["redirect_uri"] == [settings.oauth_redirect_uri]
    assert q["code_challenge_method"] == ["S256"]
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization)).all()
    assert auth.requested_by_member_id == world.admin.id
    assert "sec" not in r.headers["location"]
    assert sent.calls == []  # nothing runs until PagerDuty sends the browser back


def test_disconnect_form_moves_to_disconnecting_and_enqueues(client, world, session, sent):
    conn = _connected(session, world)
    act_as(client, world.owner)
    r = post(client, "/panel/disconnect")
    assert r.status_code == 303
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "disconnecting"
    assert sent.names() == ["pagerduty.disconnect"]
    page = client.get("/panel").text
    assert "Disconnecting from PagerDuty" in page
    assert '<meta http-equiv="refresh"' in page


def test_sync_now_form_enqueues_a_manual_sync(client, world, session, sent) -> None:
    _connected(session, world)
    act_as(client, world.owner)
    r = post(client, "/panel/sync")
    assert r.status_code == 303
    assert sent.names() == ["pagerduty.sync_connection"]
    assert sent.calls[0]["kwargs"]["kind"] == "manual"
    # Until a sync started after the click has finished, the page shows it and refreshes.
    page = client.get(r.headers["location"]).text
    assert r.headers["location"].startswith("/panel?sync_requested=")
    assert 'id="syncing"' in page
    assert '<meta http-equiv="refresh"' in page
    old = int(r.headers["location"].rsplit("=", 1)[1]) - panel_page.SYNC_WAIT_SECONDS - 5
    page = client.get(f"/panel?sync_requested={old}").text
    assert 'id="syncing"' not in page
    assert '<meta http-equiv="refresh"' not in page


def test_a_sync_that_breaks_the_connection_is_followed_until_its_run_is_recorded(
    client, world, session, sent
) -> None:
    """An OAuth refresh that PagerDuty refuses commits needs_reauth before the sync records its
    failed run: the page refreshes on until that run is there, so the admin reads the attempt."""
    conn = _connected(session, world)
    act_as(client, world.owner)
    location = post(client, "/panel/sync").headers["location"]
    conn.status = ConnectionStatus.NEEDS_REAUTH  # the refresh's commit; the run not yet written
    session.commit()
    page = client.get(location).text
    assert 'data-status="needs_reauth"' in page
    assert 'id="last-sync"' not in page
    assert '<meta http-equiv="refresh"' in page
    _run(session, conn, status="failed", error="PagerDuty refused this connection's login.")
    page = client.get(location).text
    assert 'id="last-sync" data-outcome="failed"' in page
    assert '<meta http-equiv="refresh"' not in page


def test_sync_now_when_not_connected_is_explained(client, world, sent) -> None:
    act_as(client, world.owner)
    assert post(client, "/panel/sync").status_code == 303
    assert "PagerDuty is not connected to this workspace." in client.get("/panel").text
    assert sent.calls == []


def test_bind_and_make_manual_forms(client, world, session, sent) -> None:
    _connected(session, world)
    rotation = factories.rotation(session, world.ws, [world.owner], name="Primary")
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert f'action="/panel/rotations/{rotation.id}/bind"' in page
    assert '<option value="PSPRIMA"' in page
    r = post(client, f"/panel/rotations/{rotation.id}/bind", {"schedule_id": "PSPRIMA"})
    assert r.status_code == 303
    session.expire_all()
    bound = session.get(Rotation, rotation.id)
    assert (bound.mode, bound.pagerduty_schedule_id) == ("pagerduty", "PSPRIMA")
    assert sent.names() == ["pagerduty.sync_connection"]
    assert sent.calls[0]["kwargs"]["kind"] == "binding"
    page = client.get("/panel").text
    assert "Primary now follows its PagerDuty schedule" in page
    assert '<meta http-equiv="refresh"' in page  # filling in

    r = post(client, f"/panel/rotations/{rotation.id}/manual")
    assert r.status_code == 303
    session.expire_all()
    assert session.get(Rotation, rotation.id).mode == "manual"
    assert "Primary is Manual again" in client.get("/panel").text


def test_bind_to_several_schedules_with_the_checkboxes(client, world, session, sent) -> None:
    conn = _connected(session, world)
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSSECON", name="Secondary"))
    rotation = factories.rotation(session, world.ws, name="Primary")
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert "Follow several schedules" in page
    assert '<input type="checkbox" name="schedule_ids" value="PSSECON"' in page

    r = client.post(
        f"/panel/rotations/{rotation.id}/bind",
        data={"schedule_ids": ["PSPRIMA", "PSSECON"], "csrf_token": csrf(client)},
    )
    assert r.status_code == 303
    session.expire_all()
    followed = session.scalars(
        select(RotationSchedule.schedule_pagerduty_id)
        .where(RotationSchedule.rotation_id == rotation.id)
        .order_by(RotationSchedule.position)
    ).all()
    assert followed == ["PSPRIMA", "PSSECON"]
    page = client.get("/panel").text
    assert "Primary now follows 2 PagerDuty schedules" in page
    row = page[page.index('data-rotation="Primary"') :]
    row = row[: row.index("</tr>")]
    assert 'data-schedule="PSPRIMA">Primary On-Call</span>, ' in row
    assert 'data-schedule="PSSECON">Secondary</span>' in row
    assert 'value="PSSECON" checked' in row  # the boxes show what it follows


def test_bind_to_an_unknown_schedule_is_explained(client, world, session, sent) -> None:
    _connected(session, world)
    rotation = factories.rotation(session, world.ws, name="Primary")
    session.commit()
    act_as(client, world.owner)
    post(client, f"/panel/rotations/{rotation.id}/bind", {"schedule_id": "PNOPE00"})
    assert "No such schedule in the connected PagerDuty account" in client.get("/panel").text
    assert post(client, "/panel/rotations/not-a-uuid/bind", {"schedule_id": "X"}).status_code == 303
    assert "This rotation does not exist" in client.get("/panel").text
    assert sent.calls == []


def test_demoted_member_loses_the_admin_view_at_once(client, world, session) -> None:
    act_as(client, world.admin)
    assert "Login using an API Key" in client.get("/panel").text
    world.admin.role = "member"
    session.commit()
    assert "Login using an API Key" not in client.get("/panel").text


# --- production ---------------------------------------------------------------------------------


APP_LOGIN = "https://app.roundrobin.example/integrations/pagerduty/sign-in"


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RRPD_ENV", "production")
    monkeypatch.setenv("RRPD_APP_LOGIN_URL", APP_LOGIN)
    reset_settings_cache()
    assert get_settings().is_production
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_production_has_no_picker_and_needs_a_real_token(client, world, production, sent):
    page = client.get("/panel").text
    assert 'id="member-picker"' not in page
    assert "Open this panel from the Round Robin app" in page
    assert "Olive Owner" not in page  # no member list for strangers
    # Even with a valid CSRF token (there is no form to take it from: mint it as the panel would).
    token = panel.csrf_token_for(client.cookies.get(panel.CSRF_COOKIE), "anonymous")
    r = client.post("/panel/act-as", data={"member_id": str(world.owner.id), "csrf_token": token})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "picker_disabled"
    assert panel.IDENTITY_COOKIE not in client.cookies

    assert client.get("/panel?token=not-a-jwt").status_code == 401
    token = issue_token(world.ws.id, world.admin.id, "admin", nonce=start_sign_in(client))
    r = client.get(f"/panel?token={token}")
    assert r.status_code == 303
    assert r.headers["location"] == "/panel"
    page = client.get("/panel").text
    assert 'id="acting-as">Ada Admin' in page
    assert 'id="member-picker"' not in page
    r = post(client, "/panel/api-key", {"api_key": KEY})
    assert r.status_code == 303
    assert sent.names() == ["pagerduty.validate_api_key"]


def start_sign_in(client: TestClient) -> str:
    """Press "Sign in with Round Robin": the nonce the app must put in the token it mints."""
    assert 'id="sign-in"' in client.get("/panel").text
    r = client.get("/panel/login")
    assert r.status_code == 303
    assert r.headers["location"].startswith(APP_LOGIN + "?")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["return_to"] == [f"{get_settings().public_url}/panel"]
    assert panel.LOGIN_COOKIE in client.cookies
    (nonce,) = q["nonce"]
    assert nonce != client.cookies.get(panel.LOGIN_COOKIE)  # the cookie itself never leaves
    return nonce


def test_a_sign_in_link_works_only_in_the_browser_that_started_it(
    client, world, production
) -> None:
    """Login CSRF: an attacker mints a token for their own account (through the app, with a
    sign-in they started) and sends the link to a victim, who would then paste their
    PagerDuty key into the attacker's workspace. The victim's browser refuses it."""
    from api_stub.app import create_app

    with TestClient(create_app(), follow_redirects=False) as attacker:
        attackers_link = "/panel?token=" + issue_token(
            world.other_ws.id, world.other_admin.id, "admin", nonce=start_sign_in(attacker)
        )
    for started in (False, True):
        if started:
            start_sign_in(client)  # the victim's own, unrelated sign-in
        r = client.get(attackers_link)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "login_nonce_mismatch"
        assert "not started in this browser" in r.json()["error"]["message"]
        assert panel.IDENTITY_COOKIE not in client.cookies
    # A token without a nonce (e.g. an API token) never signs a browser in.
    r = client.get("/panel?token=" + issue_token(world.ws.id, world.admin.id, "admin"))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "login_nonce_mismatch")

    # The real thing works once; the same link again (the login cookie is spent) does not.
    link = "/panel?token=" + issue_token(
        world.ws.id, world.admin.id, "admin", nonce=start_sign_in(client)
    )
    assert client.get(link).status_code == 303
    assert 'id="acting-as">Ada Admin' in client.get("/panel").text
    client.cookies.delete(panel.IDENTITY_COOKIE)
    assert client.get(link).status_code == 401


def test_sign_in_without_an_app_login_url_is_explained(client, world, monkeypatch) -> None:
    r = client.get("/panel/login")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "login_not_configured"
    assert "RRPD_APP_LOGIN_URL" in r.json()["error"]["message"]


# --- first use: what a newcomer needs on the page -----------------------------------------------


def test_oauth_modal_shows_the_redirect_url_to_register_and_the_scopes(client, world) -> None:
    from workers.connections.oauth_login import OAUTH_SCOPES

    act_as(client, world.owner)
    page = client.get("/panel").text
    modal = page[page.index('id="oauth-modal"') :]
    modal = modal[: modal.index("</dialog>")]
    redirect = f"{get_settings().public_url}/v1/pagerduty/oauth/callback"
    assert f'id="oauth-redirect-url" readonly value="{redirect}"' in modal
    assert 'data-copy="oauth-redirect-url"' in modal
    assert ">Copy</button>" in modal
    scopes = re.findall(r'<code class="scope">([^<]+)</code>', modal)
    assert (
        scopes == list(OAUTH_SCOPES) == ["openid", "users.read", "schedules.read", "oncalls.read"]
    )
    # The login really asks for exactly those scopes.
    r = post(client, "/panel/oauth", {"client_id": "cid", "client_secret": "sec"})
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["scope"] == [" ".join(scopes)]
    # This browser keeps the login for a callback that comes back without state.
    assert (
        client.cookies.get("rrpd_oauth_login", path="/v1/pagerduty/oauth/callback")
        == (query["state"][0])
    )


def _run(session, conn, status="succeeded", minutes_ago=0.0, changes=0, error=None):
    from datetime import timedelta

    started = utcnow() - timedelta(minutes=minutes_ago)
    session.add(
        SyncRun(
            connection_id=conn.id,
            generation=conn.generation,
            kind="scheduled",
            status=status,
            started_at=started,
            finished_at=started,
            duration_ms=800,
            rows_updated=changes,
            error=error,
        )
    )
    session.commit()


def _dd(page: str, element_id: str) -> str:
    match = re.search(rf'<dd id="{element_id}"[^>]*>(.*?)</dd>', page, re.S)
    assert match, element_id
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_last_sync_is_the_last_run_and_last_change_is_separate(client, world, session) -> None:
    from datetime import timedelta

    conn = _connected(session, world)
    conn.last_synced_at = utcnow() - timedelta(hours=3)  # nothing new for three hours
    session.commit()
    _run(session, conn, minutes_ago=0.5)
    act_as(client, world.owner)
    page = client.get("/panel").text
    last = _dd(page, "last-sync")
    assert "s ago) — succeeded, nothing changed" in last, last
    assert "3 h" not in last
    changed = conn.last_synced_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert _dd(page, "last-change").startswith(changed)
    _run(session, conn, "failed", error="PagerDuty answered 500. Retrying.")
    last = _dd(client.get("/panel").text, "last-sync")
    assert "— failed: PagerDuty answered 500. Retrying." in last


def test_connected_admin_can_replace_the_key_or_log_in_again_without_disconnecting(
    client, world, session, sent
) -> None:
    conn = _connected(session, world)
    rotation = factories.rotation(session, world.ws, [world.owner], name="Primary")
    rotation.mode, rotation.pagerduty_schedule_id = "pagerduty", "PSPRIMA"
    rotation.bound_at = rotation.last_synced_at = utcnow()
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    menu = page[page.index('id="connected-menu"') : page.index("</details>")]
    assert 'data-open="api-key-modal" id="open-replace-api-key">Replace API key' in menu
    assert 'data-open="oauth-modal" id="open-reauth-oauth">Log in again with OAuth' in menu
    assert '<h2 id="api-key-modal-title">Replace the API key</h2>' in page
    assert '<h2 id="oauth-modal-title">Log in again with OAuth 2.0</h2>' in page
    generation = conn.generation
    r = post(client, "/panel/api-key", {"api_key": KEY, "region": "us"})
    assert r.status_code == 303
    live = _live(session, world)
    # The new key waits beside the working one until PagerDuty accepts it.
    assert (live.id, live.status, live.generation) == (conn.id, "connected", generation)
    assert (live.pending_status, live.pending_generation) == ("checking", generation + 1)
    assert sent.names() == ["pagerduty.validate_api_key"]
    session.expire_all()
    assert session.get(Rotation, rotation.id).mode == "pagerduty"  # still bound
    page = client.get(r.headers["location"]).text
    assert "the current key keeps working" in page
    assert 'id="pending-credential"' in page


def test_disconnect_confirmation_lists_the_rotations_and_the_outcome_counts_them(
    client, world, session, sent
) -> None:
    from workers.disconnect.transaction import disconnect_connection

    conn = _connected(session, world)
    for name in ("Primary", "Secondary"):
        r = factories.rotation(session, world.ws, [world.owner], name=name)
        r.mode, r.pagerduty_schedule_id = "pagerduty", "PSPRIMA"
        r.bound_at = r.last_synced_at = utcnow()
    factories.rotation(session, world.ws, [world.owner], name="Front Desk")
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    modal = page[page.index('id="disconnect-modal"') :]
    modal = modal[: modal.index("</dialog>")]
    assert "These 2 PagerDuty-bound rotations will revert to Manual" in modal
    listed = re.findall(r"<li>([^<]+?) <span", modal)
    assert listed == ["Primary", "Secondary"]
    assert "Front Desk" not in modal

    r = post(client, "/panel/disconnect")
    assert r.status_code == 303
    assert r.headers["location"] == f"/panel?disconnected={conn.id}"
    page = client.get(r.headers["location"]).text
    assert "Disconnecting from PagerDuty" in page
    assert '<meta http-equiv="refresh"' in page
    assert "Disconnected;" not in page
    disconnect_connection(conn.id, actor_member_id=world.owner.id)  # what the worker does
    page = client.get(r.headers["location"]).text
    assert "Disconnected; 2 rotations are now Manual (Primary, Secondary)." in page
    # PagerDuty has no API to revoke the credential: the page says where to do it.
    assert "deleted its copy of the API key" in page
    assert "Integrations &gt; API Access Keys" in page
    assert '<meta http-equiv="refresh"' not in page


def test_disconnecting_what_is_already_disconnected_is_not_an_error(client, world, sent) -> None:
    act_as(client, world.owner)
    r = post(client, "/panel/disconnect")
    assert r.status_code == 303
    page = client.get("/panel").text
    assert '<div class="notice ok" role="status">PagerDuty is already disconnected' in page
    assert 'class="notice error"' not in page
    assert sent.calls == []


def test_finishing_notice_goes_once_the_outcome_is_known(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.VALIDATING)
    session.commit()
    act_as(client, world.owner)
    url = "/panel?pagerduty=connecting&task_id=t1"
    page = client.get(url).text
    assert "Finishing the connection" in page
    assert '<meta http-equiv="refresh"' in page
    conn.status = "connected"
    conn.pagerduty_subdomain = "acme"
    session.commit()
    page = client.get(url).text  # the refresh reloads the same address
    assert "Finishing the connection" not in page
    assert "Connected to PagerDuty" in page
    conn.status = "invalid"
    conn.last_error = "PagerDuty rejected this API key."
    session.commit()
    page = client.get(url).text
    assert "Finishing the connection" not in page
    assert "PagerDuty rejected this API key." in page


def test_connected_but_never_synced_keeps_refreshing_until_the_first_sync(
    client, world, session
) -> None:
    from datetime import timedelta

    conn = _connected(session, world, with_schedule=False)
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert '<meta http-equiv="refresh"' in page
    assert 'id="first-sync"' in page
    assert "First sync in progress" in page
    assert _dd(page, "last-sync") == "not yet"
    _run(session, conn)
    page = client.get("/panel").text
    assert '<meta http-equiv="refresh"' not in page
    assert 'id="first-sync"' not in page
    # Bounded: a connection whose first sync never comes stops refreshing after a while.
    session.execute(SyncRun.__table__.delete().where(SyncRun.__table__.c.connection_id == conn.id))
    conn.status_changed_at = utcnow() - timedelta(seconds=panel_page.FIRST_SYNC_WAIT_SECONDS + 1)
    session.commit()
    assert '<meta http-equiv="refresh"' not in client.get("/panel").text


def test_api_key_modal_explains_the_region(client, world, session) -> None:
    act_as(client, world.owner)
    page = client.get("/panel").text
    modal = page[page.index('id="api-key-modal"') :]
    modal = modal[: modal.index("</dialog>")]
    assert '<option value="us">US (default)</option>' in modal
    assert "Choose EU only if your PagerDuty address ends in .eu.pagerduty.com" in modal
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.INVALID)
    conn.last_error = "PagerDuty rejected this API key. Check that you copied the whole key."
    session.commit()
    page = client.get("/panel").text
    hint = page[page.index('id="region-hint"') :]
    assert "checked with PagerDuty's US service region" in hint
    assert "ends in .eu.pagerduty.com, log in again and choose region EU" in hint

"""Connecting: API key (and replacing it), OAuth start and callback, secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, text, update

from models import (
    AuditEvent,
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    Rotation,
    RotationMode,
    TaskRecord,
    utcnow,
)
from tests.support import factories
from workers.core.settings import get_settings

pytestmark = pytest.mark.clock  # the clock lane runs it at other hours too

KEY1 = "u+firstkeyAAAAAAAAAAA"
KEY2 = "y_NbAkKc66ryYTWUXYEu"  # 20-character token shape


def key_url(world) -> str:
    return f"/v1/workspaces/{world.ws.id}/pagerduty/api-key"


def oauth_url(world) -> str:
    return f"/v1/workspaces/{world.ws.id}/pagerduty/oauth"


def _connections(session, world) -> list[PagerDutyConnection]:
    session.expire_all()
    return list(
        session.scalars(
            select(PagerDutyConnection).where(PagerDutyConnection.workspace_id == world.ws.id)
        )
    )


def test_api_key_creates_a_validating_connection_and_enqueues_validation(
    client, world, session, sent
) -> None:
    r = client.put(
        key_url(world),
        json={"api_key": f"  {KEY1}\n", "region": "eu"},
        headers=world.headers(world.owner),
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["connection"]["status"] == "validating"
    assert body["connection"]["auth_method"] == "api_key"
    assert body["connection"]["region"] == "eu"
    assert body["connection"]["generation"] == 1
    (conn,) = _connections(session, world)
    assert str(conn.id) == body["connection"]["id"]
    assert conn.api_key == KEY1  # stripped, then encrypted
    assert conn.connected_by_member_id == world.owner.id
    record = session.get(TaskRecord, body["task_id"])
    assert record.workspace_id == world.ws.id
    assert record.task_name == "pagerduty.validate_api_key"
    assert sent.calls == [
        {
            "name": "pagerduty.validate_api_key",
            "args": None,
            "kwargs": {"connection_id": str(conn.id), "generation": 1},
            "task_id": body["task_id"],
            "countdown": None,
        }
    ]
    events = session.scalars(select(AuditEvent).where(AuditEvent.workspace_id == world.ws.id))
    (event,) = list(events)
    assert event.action == "pagerduty.connect.api_key"
    assert event.actor_member_id == world.owner.id
    assert KEY1 not in json.dumps(event.details)


def test_replacing_the_key_bumps_generation_and_clears_oauth(client, world, session, sent) -> None:
    # Over a connection that is not connected the new key replaces directly (a connected one
    # keeps its credentials while the new key is checked: test_pending_credentials.py).
    conn = factories.api_key_connection(
        session, world.ws, api_key=KEY1, by=world.owner, status=ConnectionStatus.NEEDS_REAUTH
    )
    conn.auth_method = "oauth"
    conn.api_key = None
    conn.oauth_client_id = "client"
    conn.oauth_client_secret = "client-secret"
    conn.access_token = "access"
    conn.refresh_token = "refresh"
    conn.access_token_expires_at = utcnow() + timedelta(hours=1)
    conn.granted_scopes = "openid users.read schedules.read"
    conn.last_error = "old problem"
    session.commit()

    r = client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    assert r.status_code == 202, r.text
    assert r.json()["connection"]["generation"] == 2
    (again,) = _connections(session, world)  # replaced in place, not a second row
    assert again.id == conn.id
    assert again.generation == 2
    assert again.status == "validating"
    assert again.auth_method == "api_key"
    assert again.api_key == KEY2
    assert again.oauth_client_id is None
    assert again.oauth_client_secret is None
    assert again.access_token is None
    assert again.refresh_token is None
    assert again.access_token_expires_at is None
    assert again.granted_scopes is None
    assert again.last_error is None
    assert again.connected_by_member_id == world.admin.id
    assert sent.calls[-1]["kwargs"] == {"connection_id": str(conn.id), "generation": 2}

    # And once more: generation 3.
    r = client.put(key_url(world), json={"api_key": KEY1}, headers=world.headers(world.admin))
    assert r.json()["connection"]["generation"] == 3


def test_a_new_key_over_a_connected_connection_is_pending_and_syncs_go_on(
    client, world, session, sent
) -> None:
    conn = factories.api_key_connection(session, world.ws, api_key=KEY1, by=world.owner)
    session.commit()

    r = client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["connection"]["status"] == "connected"
    assert body["connection"]["generation"] == 1
    assert body["pending"]["status"] == "checking"
    assert body["pending"]["auth_method"] == "api_key"
    assert KEY2 not in r.text
    assert sent.calls[-1]["name"] == "pagerduty.validate_api_key"
    assert sent.calls[-1]["kwargs"] == {"connection_id": str(conn.id), "generation": 2}
    (again,) = _connections(session, world)
    assert (again.api_key, again.pending_api_key) == (KEY1, KEY2)

    doc = client.get(
        f"/v1/workspaces/{world.ws.id}/pagerduty", headers=world.headers(world.member)
    ).json()
    assert doc["status"] == "connected"
    assert doc["pending"]["status"] == "checking"
    assert doc["pending"]["message"].startswith("Checking the new key")
    r = client.post(
        f"/v1/workspaces/{world.ws.id}/pagerduty/sync", headers=world.headers(world.admin)
    )
    assert r.status_code == 202, r.text


def test_discarding_the_pending_key_answers_the_status_and_404_once_gone(
    client, world, session, sent
) -> None:
    conn = factories.api_key_connection(session, world.ws, api_key=KEY1, by=world.owner)
    session.commit()
    client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    pending_url = f"/v1/workspaces/{world.ws.id}/pagerduty/pending"

    r = client.delete(pending_url, headers=world.headers(world.member))
    assert r.status_code == 403, r.text
    r = client.delete(pending_url, headers=world.headers(world.admin))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "connected"
    assert r.json()["pending"] is None
    (again,) = _connections(session, world)
    assert (again.id, again.api_key, again.pending_api_key) == (conn.id, KEY1, None)
    r = client.delete(pending_url, headers=world.headers(world.admin))
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "no_pending"


def test_confirming_an_account_change_switches_and_answers_the_status(
    client, world, session, sent
) -> None:
    conn = factories.api_key_connection(session, world.ws, api_key=KEY1, by=world.owner)
    conn.pagerduty_subdomain = "acme"
    rotation = factories.rotation(session, world.ws, [world.admin], name="Primary on-call")
    rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, "PSPRIMA"
    session.commit()
    confirm_url = f"/v1/workspaces/{world.ws.id}/pagerduty/pending/confirm"
    # Nothing pending, then a key still being checked: neither can be confirmed.
    r = client.post(confirm_url, headers=world.headers(world.admin))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_pending")
    client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    r = client.post(confirm_url, headers=world.headers(world.admin))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_account_change")
    # What its check records for a key of another account (test_account_change.py).
    session.expire_all()
    (conn,) = _connections(session, world)
    conn.pending_status = PendingStatus.ACCOUNT_CHANGE
    conn.pending_message = "The new key belongs to another PagerDuty account (euco.pagerduty.com)"
    conn.pending_drive_at = None
    conn.pending_account = {
        "subdomain": "euco",
        "previous_subdomain": "acme",
        "key_level": "account",
        "notice": None,
        "schedules": {"PSEUDAY": "EU Daily"},
    }
    session.commit()

    doc = client.get(
        f"/v1/workspaces/{world.ws.id}/pagerduty", headers=world.headers(world.member)
    ).json()
    assert doc["pending"]["account"] == {"subdomain": "euco", "previous_subdomain": "acme"}
    assert doc["pending"]["rotations"] == [
        {
            "rotation_id": str(rotation.id),
            "name": "Primary on-call",
            "schedule_id": "PSPRIMA",
            "schedule_name": None,
            "outcome": "made_manual",
        }
    ]
    r = client.post(confirm_url, headers=world.headers(world.member))
    assert r.status_code == 403, r.text
    r = client.post(confirm_url, headers=world.headers(world.admin))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["account_subdomain"]) == ("connected", "euco")
    assert r.json()["pending"] is None
    assert KEY2 not in r.text
    (again,) = _connections(session, world)
    assert (again.api_key, again.generation, again.pending_api_key) == (KEY2, 2, None)
    session.expire_all()
    assert session.get(Rotation, rotation.id).mode == RotationMode.MANUAL
    assert sent.calls[-1]["name"] == "pagerduty.sync_connection"
    r = client.post(confirm_url, headers=world.headers(world.admin))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_pending")


def test_new_key_while_disconnecting_is_409(client, world, session, sent) -> None:
    factories.api_key_connection(session, world.ws, status=ConnectionStatus.DISCONNECTING)
    session.commit()
    r = client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "disconnecting"
    assert sent.calls == []
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TaskRecord)) == 0


def test_after_a_disconnect_a_new_key_makes_a_new_row(client, world, session) -> None:
    old = factories.api_key_connection(session, world.ws, status=ConnectionStatus.DISCONNECTING)
    old.status = "disconnected"
    session.commit()
    r = client.put(key_url(world), json={"api_key": KEY2}, headers=world.headers(world.admin))
    assert r.status_code == 202
    assert r.json()["connection"]["id"] != str(old.id)
    assert len(_connections(session, world)) == 2


def test_enqueued_message_reaches_redis_with_ids_only(db, world, session) -> None:
    """No patching here: the real publish path, watched on the Redis server itself (MONITOR),
    so a worker consuming the message first cannot hide it."""
    import threading

    import redis
    from fastapi.testclient import TestClient

    from api_stub.app import create_app

    settings = get_settings()
    queue_key = f"{settings.redis_key_prefix}:interactive"
    pushed: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    def watch() -> None:
        # No socket timeout: redis-py drops a MONITOR connection that timed out, and under load
        # the push (by the outbox relay, after the commit) can come more than a moment later.
        with redis.Redis.from_url(settings.broker_url).monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                if stop.is_set():
                    return
                command = event["command"]
                if command.startswith(("LPUSH", "RPUSH")) and queue_key in command:
                    pushed.append(command)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    with TestClient(create_app()) as client:
        r = client.put(key_url(world), json={"api_key": KEY1}, headers=world.headers(world.admin))
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]

    def ours() -> list[str]:
        return [c for c in list(pushed) if task_id in c]

    deadline = time.monotonic() + 15
    while not ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()  # the watcher returns at the server's next command
    assert len(ours()) == 1, "the task never reached the interactive queue"
    raw = ours()[0].split(" ", 2)[2].strip('"').encode().decode("unicode_escape")
    message = json.loads(raw)
    assert message["headers"]["task"] == "pagerduty.validate_api_key"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == []
    assert kwargs == {"connection_id": r.json()["connection"]["id"], "generation": 1}
    assert KEY1 not in ours()[0]


# --- OAuth start --------------------------------------------------------------------------------


def _start(client, world, **body):
    payload = {"client_id": "my-client-id", "client_secret": "my-client-secret", **body}
    return client.post(oauth_url(world), json=payload, headers=world.headers(world.admin))


def test_oauth_start_returns_a_pkce_authorization_url(client, world, session, sent) -> None:
    settings = get_settings()
    before = utcnow()
    r = _start(client, world, region="eu")
    assert r.status_code == 201, r.text
    url = urlsplit(r.json()["authorization_url"])
    # The identity host may carry a path (the simulator serves it under /identity).
    authorize = urlsplit(settings.pagerduty_identity_url.rstrip("/") + "/oauth/authorize")
    assert url[:3] == authorize[:3]  # scheme, host, path
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == "my-client-id"
    assert q["redirect_uri"] == settings.oauth_redirect_uri
    assert q["code_challenge_method"] == "S256"
    assert set(q["scope"].split()) == {"openid", "users.read", "schedules.read", "oncalls.read"}
    assert len(q["state"]) >= 32
    assert len(q["code_challenge"]) == 43

    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert auth.state_hash == hashlib.sha256(q["state"].encode()).hexdigest()
    verifier = auth.code_verifier
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge.decode() == q["code_challenge"]
    assert auth.client_secret == "my-client-secret"
    assert auth.client_id == "my-client-id"
    assert auth.region == "eu"
    assert auth.requested_by_member_id == world.admin.id
    ttl = timedelta(seconds=settings.oauth_state_ttl_seconds)
    assert before + ttl <= auth.expires_at <= utcnow() + ttl
    assert r.json()["expires_at"].startswith(auth.expires_at.isoformat()[:19])
    assert sent.calls == []  # nothing to do until PagerDuty calls back
    assert not _connections(session, world)


def test_oauth_start_rejects_bad_input(client, world, session) -> None:
    for body in (
        {"client_secret": "s"},
        {"client_id": "has space", "client_secret": "s"},
        {"client_id": "c", "client_secret": "s", "region": "apac"},
    ):
        r = client.post(oauth_url(world), json=body, headers=world.headers(world.admin))
        assert r.status_code == 422, (body, r.text)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(OAuthAuthorization)) == 0


def _oauth_connection(session, world, status=ConnectionStatus.CONNECTED) -> PagerDutyConnection:
    conn = factories.api_key_connection(session, world.ws, status=status, region="eu")
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    conn.oauth_client_id = "stored-client-id"
    conn.oauth_client_secret = "stored-client-secret"
    session.commit()
    return conn


@pytest.mark.parametrize("status", ["connected", "invalid", "needs_reauth"])
def test_oauth_start_without_the_app_reuses_the_stored_one(
    client, world, session, sent, status
) -> None:
    _oauth_connection(session, world, ConnectionStatus(status))
    r = client.post(oauth_url(world), json={"region": "eu"}, headers=world.headers(world.admin))
    assert r.status_code == 201, r.text
    assert "stored-client-secret" not in r.text  # never sent to the browser
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.json()["authorization_url"]).query).items()}
    assert q["client_id"] == "stored-client-id"
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert (auth.client_id, auth.client_secret) == ("stored-client-id", "stored-client-secret")
    assert auth.region == "eu"
    # Copied encrypted, like a typed one.
    raw = session.execute(
        text("SELECT client_secret_encrypted FROM oauth_authorizations")
    ).scalar_one()
    assert raw.startswith("v1:")


def test_oauth_start_with_a_new_app_replaces_the_stored_one(client, world, session) -> None:
    _oauth_connection(session, world)
    r = _start(client, world)
    assert r.status_code == 201, r.text
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert (auth.client_id, auth.client_secret) == ("my-client-id", "my-client-secret")


def test_oauth_start_without_the_app_when_none_is_stored_is_a_conflict(
    client, world, session
) -> None:
    for arrange in (
        lambda: None,  # no connection
        lambda: factories.api_key_connection(session, world.ws),  # an API key: no app
    ):
        arrange()
        session.commit()
        r = client.post(oauth_url(world), json={}, headers=world.headers(world.admin))
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "no_stored_oauth_app"
        assert "Client ID" in r.json()["error"]["message"]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(OAuthAuthorization)) == 0


# --- OAuth callback -----------------------------------------------------------------------------


def _state_of(start_response) -> str:
    return parse_qs(urlsplit(start_response.json()["authorization_url"]).query)["state"][0]


def _callback(client, **params):
    r = client.get("/v1/pagerduty/oauth/callback", params=params)
    assert r.status_code == 303, r.text
    location = urlsplit(r.headers["location"])
    base = get_settings().effective_app_integrations_url
    assert f"{location.scheme}://{location.netloc}{location.path}" == base
    return {k: v[0] for k, v in parse_qs(location.query).items()}, r


def test_callback_success_stores_code_encrypted_and_enqueues_exchange(
    client, world, session, sent
) -> None:
    state = _state_of(_start(client, world))
    params, r = _callback(client, code="the-auth-code-123", state=state)
    assert r.headers["cache-control"] == "no-store"
    assert params["pagerduty"] == "connecting"
    task_id = params["task_id"]
    assert "the-auth-code-123" not in r.headers["location"]
    assert state not in r.headers["location"]

    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert auth.consumed_at is not None
    assert auth.code_received_at is not None
    assert auth.code == "the-auth-code-123"
    (conn,) = _connections(session, world)
    assert auth.connection_id == conn.id
    assert conn.status == "validating"
    assert conn.auth_method == "oauth"
    assert conn.oauth_client_id == "my-client-id"
    assert conn.oauth_client_secret == "my-client-secret"
    assert conn.connected_by_member_id == world.admin.id
    assert session.get(TaskRecord, task_id).workspace_id == world.ws.id
    assert sent.calls[-1]["name"] == "pagerduty.exchange_oauth_code"
    assert sent.calls[-1]["kwargs"] == {"authorization_id": str(auth.id)}
    assert sent.calls[-1]["task_id"] == task_id
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {"pagerduty.connect.oauth_started", "pagerduty.connect.oauth"} <= actions


def test_callback_over_a_connected_api_key_connection_waits_beside_it(
    client, world, session, sent
) -> None:
    # New credentials never break working ones: the login is the pending credential.
    conn = factories.api_key_connection(session, world.ws, api_key=KEY1)
    session.commit()
    state = _state_of(_start(client, world))
    params, _ = _callback(client, code="abc", state=state)
    assert params["pagerduty"] == "connecting"
    (again,) = _connections(session, world)
    assert again.id == conn.id
    assert (again.status, again.generation, again.auth_method) == ("connected", 1, "api_key")
    assert again.api_key == KEY1
    assert (again.pending_status, again.pending_auth_method) == ("checking", "oauth")
    assert again.pending_generation == 2
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert auth.connection_id == conn.id
    assert [c["name"] for c in sent.calls] == ["pagerduty.exchange_oauth_code"]


def test_callback_replaces_an_invalid_api_key_connection(client, world, session, sent) -> None:
    conn = factories.api_key_connection(
        session, world.ws, api_key=KEY1, status=ConnectionStatus.INVALID
    )
    session.commit()
    state = _state_of(_start(client, world))
    params, _ = _callback(client, code="abc", state=state)
    assert params["pagerduty"] == "connecting"
    (again,) = _connections(session, world)
    assert again.id == conn.id
    assert again.generation == 2
    assert again.auth_method == "oauth"
    assert again.api_key is None
    assert again.pending_status is None


def test_replayed_state_fails_the_second_time(client, world, session, sent) -> None:
    state = _state_of(_start(client, world))
    first, _ = _callback(client, code="code-1", state=state)
    assert first["pagerduty"] == "connecting"
    second, _ = _callback(client, code="code-2", state=state)
    assert second == {"pagerduty": "error", "reason": "state_invalid"}
    assert [c["name"] for c in sent.calls] == ["pagerduty.exchange_oauth_code"]
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert auth.code == "code-1"
    assert session.scalar(select(func.count()).select_from(TaskRecord)) == 1


def test_forged_state_fails_without_a_task(client, world, session, sent) -> None:
    _start(client, world)
    client.cookies.clear()  # another browser than the one that started the login
    params, _ = _callback(client, code="abc", state="forged-state-value")
    assert params == {"pagerduty": "error", "reason": "state_invalid"}
    params, _ = _callback(client, code="abc")
    assert params == {"pagerduty": "error", "reason": "state_missing"}
    assert sent.calls == []
    assert not _connections(session, world)
    session.expire_all()
    assert session.scalar(select(OAuthAuthorization.consumed_at)) is None


# --- OAuth callback without state (PagerDuty documents none): the browser's login cookie ------


def _login_cookie(response) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if "rrpd_oauth_login=" in h]
    return header


def test_starting_a_login_keeps_its_state_in_a_callback_only_cookie(client, world) -> None:
    r = _start(client, world)
    header = _login_cookie(r)
    assert header.startswith(f"rrpd_oauth_login={_state_of(r)};")
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
    assert attributes["path"] == "Path=/v1/pagerduty/oauth/callback"
    assert attributes["samesite"].lower() == "samesite=lax"  # PagerDuty's redirect is cross-site
    assert "httponly" in attributes
    assert attributes["max-age"] == f"Max-Age={get_settings().oauth_state_ttl_seconds}"


def test_a_callback_without_state_finds_the_login_this_browser_started(
    client, world, session, sent
) -> None:
    _start(client, world)
    params, r = _callback(client, code="the-code")
    assert params["pagerduty"] == "connecting"
    assert sent.calls[-1]["name"] == "pagerduty.exchange_oauth_code"
    assert 'rrpd_oauth_login=""' in _login_cookie(r)  # used: forgotten
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    assert auth.code == "the-code"
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "pagerduty.connect.oauth")
    ).one()
    assert event.details["state_returned"] is False
    again, _ = _callback(client, code="the-code")  # the cookie is gone, the login used
    assert again == {"pagerduty": "error", "reason": "state_missing"}


def test_a_callback_without_state_from_another_browser_finds_nothing(
    client, world, session, sent
) -> None:
    _start(client, world)
    client.cookies.clear()
    params, _ = _callback(client, code="attacker-code")
    assert params == {"pagerduty": "error", "reason": "state_missing"}
    client.cookies.set("rrpd_oauth_login", "guessed", path="/v1/pagerduty/oauth/callback")
    params, _ = _callback(client, code="attacker-code")
    assert params == {"pagerduty": "error", "reason": "state_invalid"}
    assert sent.calls == []
    session.expire_all()
    assert session.scalar(select(OAuthAuthorization.consumed_at)) is None


def test_the_state_in_the_redirect_decides_over_another_tabs_cookie(
    client, world, session, sent
) -> None:
    first = _state_of(_start(client, world))
    second = _state_of(_start(client, world))  # a second tab: the cookie names this login
    params, r = _callback(client, code="code-1", state=first)
    assert params["pagerduty"] == "connecting"
    assert not [h for h in r.headers.get_list("set-cookie") if "rrpd_oauth_login" in h]
    params, _ = _callback(client, code="code-2")  # the second tab's login, from its cookie
    assert params["pagerduty"] == "connecting"
    assert second not in str(sent.calls)


def test_expired_state_fails_without_a_task(client, world, session, sent) -> None:
    state = _state_of(_start(client, world))
    # By the one clock (the database server's now() is the wall clock, not the pinned one).
    session.execute(update(OAuthAuthorization).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    params, _ = _callback(client, code="abc", state=state)
    assert params == {"pagerduty": "error", "reason": "state_expired"}
    assert sent.calls == []
    assert not _connections(session, world)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(OAuthAuthorization)) == 0


def test_denied_consumes_the_state(client, world, session, sent) -> None:
    state = _state_of(_start(client, world))
    params, _ = _callback(client, error="access_denied", state=state)
    assert params == {"pagerduty": "denied"}
    session.expire_all()
    # The login ended: no row keeps its client secret or PKCE verifier.
    assert session.scalar(select(func.count()).select_from(OAuthAuthorization)) == 0
    params, _ = _callback(client, code="abc", state=state)
    assert params == {"pagerduty": "error", "reason": "state_invalid"}
    assert sent.calls == []
    assert not _connections(session, world)
    session.expire_all()
    assert "pagerduty.connect.oauth_denied" in set(session.scalars(select(AuditEvent.action)))


def test_missing_code_and_error_redirects_with_reason(client, world, sent) -> None:
    state = _state_of(_start(client, world))
    params, _ = _callback(client, state=state)
    assert params == {"pagerduty": "error", "reason": "missing_code"}
    assert sent.calls == []


def test_other_pagerduty_errors_are_not_reflected(client, world, sent) -> None:
    state = _state_of(_start(client, world))
    params, _ = _callback(client, error="<script>alert(1)</script>", state=state)
    assert params == {"pagerduty": "error", "reason": "authorization_failed"}
    state = _state_of(_start(client, world))
    params, _ = _callback(client, error="invalid_scope", state=state)
    assert params == {"pagerduty": "error", "reason": "invalid_scope"}


def test_callback_refused_when_the_requester_lost_admin_rights(
    client, world, session, sent
) -> None:
    state = _state_of(_start(client, world))
    world.admin.role = "member"
    session.merge(world.admin)
    session.commit()
    params, _ = _callback(client, code="abc", state=state)
    assert params == {"pagerduty": "error", "reason": "forbidden"}
    assert sent.calls == []


def test_secrets_are_stored_only_hashed_or_encrypted(client, world, session, sent) -> None:
    """Scan every column of every row for the plaintext of each secret we were given."""
    client.put(key_url(world), json={"api_key": KEY1}, headers=world.headers(world.admin))
    client_secret = "Sup3r-Secret-Client-Value"
    r = _start(client, world, client_secret=client_secret)
    state = _state_of(r)
    code = "authorization-code-XYZ-987"
    _callback(client, code=code, state=state)
    session.expire_all()
    (auth,) = session.scalars(select(OAuthAuthorization))
    verifier = auth.code_verifier
    secrets = {
        "api_key": KEY1,
        "client_secret": client_secret,
        "state": state,
        "code": code,
        "verifier": verifier,
    }

    dump = []
    for table in ("pagerduty_connections", "oauth_authorizations", "audit_events", "task_records"):
        for row in session.execute(text(f"SELECT * FROM {table}")).mappings():
            dump.append(json.dumps({k: str(v) for k, v in row.items()}))
    everything = "\n".join(dump)
    for name, value in secrets.items():
        assert value not in everything, f"{name} stored in plaintext"
    assert auth.state_hash == hashlib.sha256(state.encode()).hexdigest()
    # Task messages carry ids only.
    assert all(value not in json.dumps(sent.calls) for value in secrets.values())

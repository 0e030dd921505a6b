"""The help article's walkthroughs, end to end: a real API process, real workers, the simulator.

Connect with an API key; connect with OAuth 2.0 through the consent page (approved and
denied); then scan everything the system wrote for secrets.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from api_stub.auth import issue_token
from models import Role
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories, processes
from tests.support.env import TEST_ENV
from tests.support.stack import demo_api_key, demo_oauth_app
from workers.core.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.clock]


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    ws = factories.workspace(session, "Acme")
    person = factories.member(session, ws, email="alice@example.com", role=Role.PRIMARY_OWNER)
    session.commit()
    token = issue_token(ws.id, person.id, Role.PRIMARY_OWNER)
    return {"workspace_id": str(ws.id), "Authorization": f"Bearer {token}"}


def _headers(admin: dict[str, str]) -> dict[str, str]:
    return {"Authorization": admin["Authorization"]}


def _wait_connection(
    api_url: str, admin: dict[str, str], *, leave: set[str], timeout: float = 30
) -> dict:
    url = f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty"
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(url, headers=_headers(admin)).json()
        # A login over a connected connection is checked beside it: wait for its outcome too.
        checking = (body.get("pending") or {}).get("status") == "checking"
        if body["status"] not in leave and not checking:
            return body
        assert time.monotonic() < deadline, f"still {body['status']}"
        time.sleep(0.2)


def test_api_key_walkthrough(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers
) -> None:
    """Settings > Integrations > "Login using an API Key" > Save: connection established."""
    r = httpx.put(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty/api-key",
        json={"api_key": demo_api_key(sim), "region": "us"},
        headers=_headers(admin),
    )
    assert r.status_code == 202, r.text
    assert r.json()["connection"]["status"] == "validating"
    status = _wait_connection(api_url, admin, leave={"validating"})
    assert status["status"] == "connected"
    assert status["auth_method"] == "api_key"
    assert status["account_subdomain"] == "acme"
    task = httpx.get(f"{api_url}/v1/tasks/{r.json()['task_id']}", headers=_headers(admin))
    assert task.status_code == 200
    assert task.json()["state"] == "SUCCESS"


def test_wrong_api_key_walkthrough_shows_plain_error(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers
) -> None:
    httpx.put(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty/api-key",
        json={"api_key": "u+notARealKeyAtAll00", "region": "us"},
        headers=_headers(admin),
    ).raise_for_status()
    status = _wait_connection(api_url, admin, leave={"validating"})
    assert status["status"] == "invalid"
    assert status["last_error"].startswith("PagerDuty rejected this API key")


def _oauth_login(
    api_url: str,
    admin: dict[str, str],
    sim: SimulatorHandle,
    decision: str,
    *,
    started_by_the_browser: bool = False,
):
    """The browser's part: Save in the modal, PagerDuty's consent page, back to the panel.

    The login is started by the Round Robin app's server (no cookie reaches the browser), or
    by the browser itself (it keeps the login's cookie, as with the panel)."""
    oauth_app = demo_oauth_app(sim)
    sim.control.post("/auto_approve", json={"enabled": False}).raise_for_status()
    browser = httpx.Client(follow_redirects=False, timeout=10)
    start = (browser if started_by_the_browser else httpx).post(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty/oauth",
        json={
            "client_id": oauth_app["client_id"],
            "client_secret": oauth_app["client_secret"],
            "region": "us",
        },
        headers=_headers(admin),
    )
    assert start.status_code == 201, start.text
    consent = browser.get(start.json()["authorization_url"])
    assert consent.status_code == 200, consent.text[:300]
    assert "Authorize" in consent.text, consent.text[:300]
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent.text))
    form = {k: v.replace("&amp;", "&") for k, v in form.items()}
    action = re.search(r'<form method="post" action="([^"]+)"', consent.text).group(1)
    back = browser.post(action, data={**form, "decision": decision})
    assert back.status_code in (302, 303)
    callback = back.headers["location"]
    assert callback.startswith((get_settings().public_url, api_url))
    echoes = sim.control.get("/settings").json()["echo_state"]
    assert ("state" in parse_qs(urlsplit(callback).query)) == echoes
    landing = browser.get(callback)
    assert landing.status_code in (302, 303), landing.text
    return parse_qs(urlsplit(landing.headers["location"]).query)


def test_oauth_walkthrough_through_the_consent_page(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers
) -> None:
    outcome = _oauth_login(api_url, admin, sim, "approve")
    assert outcome["pagerduty"] == ["connecting"]
    status = _wait_connection(api_url, admin, leave={"validating"})
    assert status["status"] == "connected", status
    assert status["auth_method"] == "oauth"
    assert status["region"] == "us"


@pytest.mark.parametrize("echo_state", [True, False])
def test_oauth_login_from_the_browser_connects_whether_or_not_pagerduty_echoes_state(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers, echo_state: bool
) -> None:
    """PagerDuty documents no `state` in its redirect: the browser that started the login
    keeps it in a cookie, and the callback finds the login either way."""
    sim.control.post("/settings", json={"echo_state": echo_state}).raise_for_status()
    outcome = _oauth_login(api_url, admin, sim, "approve", started_by_the_browser=True)
    assert outcome["pagerduty"] == ["connecting"], outcome
    status = _wait_connection(api_url, admin, leave={"validating"})
    assert status["status"] == "connected", status


def test_a_stateless_callback_in_a_browser_that_started_no_login_is_refused(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers
) -> None:
    """Without `state` and without this browser's login cookie nothing says which login it is
    (nor that this browser started one): refused in words, nothing connected."""
    sim.control.post("/settings", json={"echo_state": False}).raise_for_status()
    outcome = _oauth_login(api_url, admin, sim, "approve")
    assert outcome == {"pagerduty": ["error"], "reason": ["state_missing"]}
    status = httpx.get(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty", headers=_headers(admin)
    ).json()
    assert status["status"] == "not_connected"


def test_oauth_consent_denied_returns_to_the_panel(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers
) -> None:
    outcome = _oauth_login(api_url, admin, sim, "deny")
    assert outcome["pagerduty"] == ["denied"]
    status = httpx.get(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty", headers=_headers(admin)
    ).json()
    assert status["status"] == "not_connected"


def test_nothing_secret_is_stored_logged_or_queued(
    api_url: str, admin: dict[str, str], sim: SimulatorHandle, live_workers, session: Session
) -> None:
    """Run both connects, then scan the database, every Redis key of this run (queues,
    results, events), and every log line our processes wrote."""
    key = demo_api_key(sim)
    oauth_app = demo_oauth_app(sim)
    r = httpx.put(
        f"{api_url}/v1/workspaces/{admin['workspace_id']}/pagerduty/api-key",
        json={"api_key": key, "region": "us"},
        headers=_headers(admin),
    )
    r.raise_for_status()
    _wait_connection(api_url, admin, leave={"validating"})
    _oauth_login(api_url, admin, sim, "approve")
    _wait_connection(api_url, admin, leave={"validating"})
    tokens = list(sim.control.get("/tokens").json()["tokens"])
    assert tokens, "the OAuth login issued tokens"
    secrets = {key, oauth_app["client_secret"]}
    # Access and refresh token values the simulator issued (it lists them by grant only, so
    # read them from its state when in-process).
    if sim.state is not None:
        secrets |= set(sim.state.access_tokens) | set(sim.state.refresh_tokens)
    secrets = {s for s in secrets if s and len(s) >= 8}

    leaks: list[str] = []
    tables = [
        r[0]
        for r in session.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
    ]
    for table in tables:
        dump = "\n".join(
            str(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{table}"'))
        )
        leaks += [f"db:{table}" for s in secrets if s in dump]
    prefix = TEST_ENV["RRPD_REDIS_KEY_PREFIX"]
    for url in (TEST_ENV["RRPD_BROKER_URL"], TEST_ENV["RRPD_RESULT_BACKEND"]):
        client = redis.Redis.from_url(url)
        for k in client.scan_iter(f"{prefix}*"):
            kind = client.type(k).decode()
            if kind == "string":
                values = [client.get(k) or b""]
            elif kind == "list":
                values = client.lrange(k, 0, -1)
            elif kind == "hash":
                values = list(client.hgetall(k).values())
            elif kind == "zset":
                values = [m for m, _ in client.zrange(k, 0, -1, withscores=True)]
            else:
                values = []
            blob = b"\n".join(values).decode(errors="replace")
            leaks += [f"redis:{k.decode()}" for s in secrets if s in blob]
    for log_file in Path(processes.LOG_DIR).glob("*.log"):
        content = log_file.read_text(errors="replace")
        leaks += [f"log:{log_file.name}" for s in secrets if s in content]
    assert leaks == []

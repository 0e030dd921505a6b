"""The API-side service functions, called directly (no HTTP), including races on PostgreSQL."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from models import (
    AuditEvent,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    Role,
    TaskRecord,
)
from tests.support import factories
from tests.support.locks import waiting_on_a_lock
from tests.support.outbox import CommittedTasks, as_call, paused_outbox
from workers.connections import oauth_login, setup, status
from workers.core import access
from workers.core.db import transaction
from workers.disconnect.request import request_disconnect
from workers.sync.request import sync_now

KEY = "u+abcdefghijklmnopqrst"
ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def sent(db: str) -> Iterator[CommittedTasks]:
    """The tasks committed to the outbox (what will be published); no relay publishes them."""
    with paused_outbox():
        yield CommittedTasks(as_call)


@pytest.fixture
def people(session):
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    member = factories.member(session, ws, role=Role.MEMBER)
    session.commit()
    return (
        ws,
        access.Actor(ws.id, admin.id, Role.ADMIN),
        access.Actor(ws.id, member.id, Role.MEMBER),
    )


def test_lower_role() -> None:
    assert access.lower_role(Role.ADMIN, Role.MEMBER) is Role.MEMBER
    assert access.lower_role(Role.PRIMARY_OWNER, Role.ADMIN) is Role.ADMIN
    assert access.lower_role(Role.ADMIN, Role.ADMIN) is Role.ADMIN


def test_resolve_actor_uses_the_lower_role_and_the_right_workspace(session, people) -> None:
    ws, admin, member = people
    assert (
        access.resolve_actor(session, ws.id, admin.member_id, Role.PRIMARY_OWNER).role is Role.ADMIN
    )
    assert access.resolve_actor(session, ws.id, member.member_id, Role.ADMIN).role is Role.MEMBER
    assert access.resolve_actor(session, uuid.uuid4(), admin.member_id, Role.ADMIN) is None


@pytest.mark.parametrize(
    "raw", ["", "short", "x" * 129, "has a space in the middle!!", "tab\tinside-the-key-1234"]
)
def test_normalize_api_key_rejects(raw) -> None:
    with pytest.raises(access.Invalid) as exc:
        setup.normalize_api_key(raw)
    assert exc.value.code == "invalid_api_key"
    if raw:
        assert raw not in exc.value.message


def test_normalize_api_key_accepts_pagerduty_shapes() -> None:
    assert setup.normalize_api_key("  u+abcdefghijklmnop  ") == "u+abcdefghijklmnop"
    assert setup.normalize_api_key("y_NbAkKc66ryYTWUXYEu") == "y_NbAkKc66ryYTWUXYEu"


def test_member_cannot_manage(session, people, sent) -> None:
    _, _, member = people
    for call in (
        lambda: setup.set_api_key(session, member, KEY),
        lambda: oauth_login.start_oauth(session, member, "c", "s"),
        lambda: request_disconnect(session, member),
        lambda: sync_now(session, member),
    ):
        with pytest.raises(access.Denied):
            call()
    session.rollback()
    assert sent == []


def test_set_api_key_enqueues_only_after_commit(session, people, sent) -> None:
    _ws, admin, _ = people
    done = setup.set_api_key(session, admin, KEY, "eu")
    assert sent == []  # not before commit
    session.commit()
    assert sent[0]["name"] == "pagerduty.validate_api_key"
    assert sent[0]["task_id"] == done.task_id
    assert sent[0]["kwargs"] == {"connection_id": str(done.connection.id), "generation": 1}


def test_rolled_back_request_publishes_nothing(session, people, sent) -> None:
    _, admin, _ = people
    setup.set_api_key(session, admin, KEY)
    session.rollback()
    assert sent == []
    assert session.scalar(select(func.count()).select_from(PagerDutyConnection)) == 0


def test_concurrent_first_connects_make_one_row(db, people, sent) -> None:
    """Two admins submit a key at once: the workspace lock serializes them; one row results."""
    _ws, admin, _ = people
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            barrier.wait()
            with transaction() as s:
                setup.set_api_key(s, admin, KEY)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with transaction() as s:
        rows = list(s.scalars(select(PagerDutyConnection)))
    assert len(rows) == 1
    assert rows[0].generation == 4
    assert sorted(c["kwargs"]["generation"] for c in sent) == [1, 2, 3, 4]


def _start(admin) -> str:
    with transaction() as s:
        start = oauth_login.start_oauth(s, admin, "client", "secret")
    return parse_qs(urlsplit(start.authorization_url).query)["state"][0]


def test_concurrent_callbacks_with_one_state_succeed_once(db, people, sent) -> None:
    """The first consumer holds its transaction open; the second waits on the row, then fails."""
    _, admin, _ = people
    state = _start(admin)
    first_done = threading.Event()
    release = threading.Event()
    results: dict[str, oauth_login.CallbackOutcome] = {}

    def first() -> None:
        with transaction() as s:
            results["first"] = oauth_login.handle_oauth_callback(s, state=state, code="code-1")
            first_done.set()
            release.wait(10)

    def second() -> None:
        with transaction() as s:
            results["second"] = oauth_login.handle_oauth_callback(s, state=state, code="code-2")

    t1 = threading.Thread(target=first)
    t1.start()
    assert first_done.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    assert waiting_on_a_lock(timeout=10)  # the second queued behind the first's row lock
    assert "second" not in results  # and was not answered early
    release.set()
    t1.join(10)
    t2.join(10)
    assert results["first"].result == "connecting"
    assert (results["second"].result, results["second"].reason) == ("error", "state_invalid")
    assert [c["name"] for c in sent] == ["pagerduty.exchange_oauth_code"]
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(TaskRecord)) == 1


def test_callback_outcome_redirect_keeps_existing_query() -> None:
    outcome = oauth_login.CallbackOutcome(result="denied", params={"pagerduty": "denied"})
    url = outcome.redirect_url("https://app.test/settings?tab=integrations&pagerduty=old")
    assert url == "https://app.test/settings?tab=integrations&pagerduty=denied"


def test_oauth_start_while_disconnecting_is_a_conflict(session, people) -> None:
    ws, admin, _ = people
    factories.api_key_connection(session, ws, status=ConnectionStatus.DISCONNECTING)
    with pytest.raises(access.Conflict) as exc:
        oauth_login.start_oauth(session, admin, "client", "secret")
    assert exc.value.code == "disconnecting"


def test_callback_while_disconnecting_consumes_state_and_reports(db, people, sent) -> None:
    ws, admin, _ = people
    state = _start(admin)
    with transaction() as s:
        factories.api_key_connection(s, s.merge(ws), status=ConnectionStatus.DISCONNECTING)
    with transaction() as s:
        outcome = oauth_login.handle_oauth_callback(s, state=state, code="abc")
    assert (outcome.result, outcome.reason) == ("error", "disconnecting")
    assert sent == []
    with transaction() as s:
        # The login ended here: its row (client secret, verifier) is gone, not kept consumed.
        assert s.scalar(select(OAuthAuthorization)) is None
        again = oauth_login.handle_oauth_callback(s, state=state, code="abc")
    assert (again.result, again.reason) == ("error", "state_invalid")


def test_disconnect_and_status(session, people, sent) -> None:
    ws, admin, _member = people
    with pytest.raises(access.Missing):
        request_disconnect(session, admin)
    conn = factories.api_key_connection(session, ws)
    done = request_disconnect(session, admin)
    assert done.connection.id == conn.id
    assert conn.status == "disconnecting"
    again = request_disconnect(session, admin)
    assert again.task_id != done.task_id
    session.commit()
    assert status.connection_status(session, ws.id).status == "disconnecting"
    events = list(session.scalars(select(AuditEvent.details)))
    assert [e["repeated"] for e in events] == [False, True]


def test_replacing_oauth_credentials_deletes_the_old_tokens_at_once(session, people, sent) -> None:
    """PagerDuty has no revocation API: our copies of the old tokens go in the replacing
    transaction, and only the validation of the new key is enqueued (over a connection that
    is not connected: a connected one keeps them until the new key is proven)."""
    from models import PagerDutyConnection

    ws, admin, _ = people
    conn = PagerDutyConnection(
        workspace_id=ws.id,
        auth_method="oauth",
        region="us",
        status="needs_reauth",
        oauth_client_id="cid",
        oauth_client_secret="csecret",
        access_token="old-access",
        refresh_token="old-refresh",
    )
    session.add(conn)
    session.commit()
    setup.set_api_key(session, admin, KEY, "us")
    session.commit()
    session.refresh(conn)
    assert (conn.access_token, conn.refresh_token) == (None, None)
    assert conn.oauth_client_secret is None
    assert [c["name"] for c in sent] == ["pagerduty.validate_api_key"]


def test_a_new_login_supersedes_the_connections_older_one(db, people, sent) -> None:
    """Replacing credentials deletes the logins of the old ones (code, verifier, secret)."""
    _, admin, _ = people
    with transaction() as s:
        first = oauth_login.handle_oauth_callback(s, state=_start(admin), code="code-1")
    with transaction() as s:
        second = oauth_login.handle_oauth_callback(s, state=_start(admin), code="code-2")
    assert first.connection_id == second.connection_id
    with transaction() as s:
        (login,) = s.scalars(select(OAuthAuthorization))
        assert login.code == "code-2"


def test_the_docs_name_the_scopes_the_login_asks_for(db, people) -> None:
    """Every scope list in the docs (what the admin ticks, what the login asks for) is the
    ``scope`` of the authorize request a login really sends."""
    _, admin, _ = people
    with transaction() as s:
        start = oauth_login.start_oauth(s, admin, "client", "secret")
    asked = parse_qs(urlsplit(start.authorization_url).query)["scope"][0]
    assert asked.split() == ["openid", "users.read", "schedules.read", "oncalls.read"]
    scope_list = re.compile(r"`((?:openid|[a-z]+\.read)(?: (?:openid|[a-z]+\.read))+)`")
    in_url = re.compile(r"[?&]scope=([a-z.+]+)")
    docs = ROOT / "docs"
    found = {
        f"{path.name}: {listed}": listed
        # The simulator's docs configure what a simulated app was granted, not what we ask.
        for path in sorted(docs.glob("*.md"))
        if path.name != "simulator.md"
        for listed in [
            *scope_list.findall(path.read_text()),
            *(m.replace("+", " ") for m in in_url.findall(path.read_text())),
        ]
    }
    assert len(found) >= 4
    wrong = sorted(where for where, listed in found.items() if listed != asked)
    assert not wrong, f"the login asks for {asked!r}; the docs say otherwise in {wrong}"

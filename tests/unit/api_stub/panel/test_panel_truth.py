"""The panel tells the admin the truth: what the connection acts as, what a broken connection
still is, words that do not contradict each other, an ended session, a refused field kept in its
modal, and the small things a person notices (plurals, dead links, a missing icon)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api_stub.auth import issue_token
from api_stub.panel import session as panel
from models import (
    AuthMethod,
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyUser,
    PendingStatus,
    Region,
    RotationMode,
    SyncRun,
    utcnow,
)
from tests.support import factories
from tests.support.api import World, act_as, csrf
from workers.connections import messages
from workers.connections.oauth_login import OAUTH_SCOPES
from workers.sync import messages as sync_messages

ROOT = Path(__file__).parents[4]
KEY = "u+panelKeyAAAAAAAAAAA"
ROLE_NOTICE = (
    "This connection acts as Bob Builder, whose PagerDuty role (user) may not see every "
    "schedule and user of the account; Round Robin sees only what that user can see."
)


def _post(client: TestClient, path: str, data: dict[str, str]):
    return client.post(path, data={**data, "csrf_token": csrf(client)})


def _run(session: Session, conn: PagerDutyConnection, status: str, minutes_ago: float) -> datetime:
    """A finished sync run ``minutes_ago``; returns its instant (the clock moves meanwhile)."""
    at = utcnow() - timedelta(minutes=minutes_ago)
    session.add(
        SyncRun(
            connection_id=conn.id,
            generation=conn.generation,
            kind="scheduled",
            status=status,
            started_at=at,
            finished_at=at,
            duration_ms=500,
            error="PagerDuty answered 401." if status == "failed" else None,
        )
    )
    session.commit()
    return at


def _oauth_connection(session: Session, world: World) -> PagerDutyConnection:
    conn = factories.api_key_connection(session, world.ws, by=world.admin)
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    conn.pagerduty_subdomain = "acme"
    conn.pagerduty_user_id = "PUBOB01"
    conn.notice = ROLE_NOTICE
    session.add(
        PagerDutyUser(
            connection_id=conn.id,
            pagerduty_id="PUBOB01",
            name="Bob Builder",
            email="bob@acme.example",
            email_key="bob@acme.example",
        )
    )
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    session.commit()
    return conn


def _dd(page: str, element_id: str) -> str:
    match = re.search(rf'<dd id="{element_id}"[^>]*>(.*?)</dd>', page, re.S)
    assert match, f"{element_id} is shown"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def _row(page: str, rotation: str) -> str:
    row = page[page.index(f'data-rotation="{rotation}"') :]
    return row[: row.index("</tr>")]


# --- what an OAuth connection acts as -----------------------------------------------------------


def test_an_oauth_connection_shows_its_notice_and_the_pagerduty_user_it_acts_as(
    client, world, session
) -> None:
    conn = _oauth_connection(session, world)
    _run(session, conn, "succeeded", minutes_ago=1)
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert 'id="connection-notice"' in page
    assert ROLE_NOTICE in page
    assert _dd(page, "acting-user") == "PagerDuty user Bob Builder <bob@acme.example>"
    assert _dd(page, "connected-by").startswith("OAuth 2.0 by Ada Admin")
    # Connected before the user was remembered at connect: the role is not known.
    assert _dd(page, "acting-user-role") == "unknown (PagerDuty did not say at connect)"
    # Remembered at connect (/users/me): their PagerDuty role, as a field of its own.
    conn.acting_user_name, conn.acting_user_email = "Bob B.", "bob@acme.example"
    conn.acting_user_role = "limited_user"
    session.commit()
    page = client.get("/panel").text
    assert _dd(page, "acting-user") == "PagerDuty user Bob B. <bob@acme.example>"
    assert _dd(page, "acting-user-role") == ("limited user (may not see every schedule and user)")
    assert 'data-role="limited_user"' in page


def test_the_region_fallback_notice_is_shown(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    conn.notice = messages.region_notice(Region.US, Region.EU)
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert "This API key belongs to a PagerDuty account in the EU region" in page


def test_a_rejected_new_key_is_shown_beside_the_working_connection(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    conn.pending_status = PendingStatus.REJECTED
    conn.pending_generation = 2
    conn.pending_since = utcnow()
    conn.pending_message = messages.pending_rejected(messages.KEY_REJECTED)
    session.commit()
    act_as(client, world.owner)
    page = html.unescape(client.get("/panel").text)
    assert 'id="pending-credential"' in page
    assert "The new key was rejected; Round Robin still uses the previous one." in page
    assert "✓ Connected to PagerDuty" in page
    # Dismissed: the line goes, the connection stays.
    r = client.post("/panel/pending/discard", data={"csrf_token": csrf(client)})
    assert r.status_code == 303
    page = html.unescape(client.get(r.headers["location"]).text)
    assert 'id="pending-credential"' not in page
    assert "The new key was discarded. Nothing else changed." in page
    assert "✓ Connected to PagerDuty" in page


def test_a_key_of_another_account_asks_the_admin_naming_what_happens_to_each_rotation(
    client, world, session
) -> None:
    """Issue 19 item 3: the switch is never silent; "Switch accounts" calls the API's confirm."""
    conn = factories.api_key_connection(session, world.ws, api_key="u+acmeKey", by=world.owner)
    conn.pagerduty_subdomain = "acme"
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    for name, sid in (("Primary", "PSPRIMA"), ("Euro days", "PSEUDAY")):
        rotation = factories.rotation(session, world.ws, [world.owner], name=name)
        rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, sid
        rotation.bound_at = rotation.last_synced_at = utcnow()
    conn.pending_api_key = "u+eucoKey"
    conn.pending_status = PendingStatus.ACCOUNT_CHANGE
    conn.pending_generation, conn.pending_since, conn.pending_region = 2, utcnow(), Region.EU
    conn.pending_message = messages.pending_account_change("acme", "euco")
    conn.pending_account = {
        "subdomain": "euco",
        "previous_subdomain": "acme",
        "key_level": "account",
        "notice": None,
        "schedules": {"PSEUDAY": "EU Daily"},
    }
    session.commit()
    _run(session, conn, "succeeded", minutes_ago=1)

    act_as(client, world.member)
    page = html.unescape(client.get("/panel").text)
    assert "The new key belongs to PagerDuty account euco (Round Robin is connected to acme)" in (
        re.sub(r"</?b>", "", page)
    )
    assert 'id="confirm-account-change"' not in page  # a Member reads, only a manager decides

    act_as(client, world.owner)
    page = re.sub(r"</?b>", "", html.unescape(client.get("/panel").text))
    assert "If you switch:" in page
    assert "Euro days stays bound to PSEUDAY" in page
    assert (
        "Primary becomes Manual (its schedule Primary is not in euco); its members and who is "
        "on duty are kept" in page
    )
    assert "Switch accounts</button>" in page
    assert "Keep acme</button>" in page
    assert "u+eucoKey" not in page

    r = client.post("/panel/pending/confirm", data={"csrf_token": csrf(client)})
    assert r.status_code == 303
    page = html.unescape(client.get(r.headers["location"]).text)
    assert "Round Robin now uses PagerDuty account euco." in page
    assert 'id="pending-credential"' not in page
    assert "Primary</b>" in page
    assert 'class="pill">Manual' in _row(page, "Primary")
    assert 'class="pill pd">PagerDuty' in _row(page, "Euro days")
    session.expire_all()
    again = session.get(PagerDutyConnection, conn.id)
    assert (again.api_key, again.generation, again.pagerduty_subdomain) == ("u+eucoKey", 2, "euco")


def test_re_bind_never_pre_selects_a_schedule_that_is_not_the_bound_one(
    client, world, session
) -> None:
    """Found before: bound to a schedule not in the list, the first schedule of the list was
    pre-selected, and one click bound the wrong one."""
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    conn.directory_read_at = utcnow()
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSAAAAA", name="Another"))
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    for name, sid in (("Listed", "PSPRIMA"), ("Orphan", "PSGONE1")):
        rotation = factories.rotation(session, world.ws, [world.owner], name=name)
        rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, sid
        rotation.bound_at = rotation.last_synced_at = utcnow()
    session.commit()
    _run(session, conn, "succeeded", minutes_ago=1)
    act_as(client, world.owner)
    page = client.get("/panel").text

    listed = _row(page, "Listed")
    assert re.findall(r'<option value="(\w*)"[^>]*selected', listed) == ["PSPRIMA"]
    orphan = _row(page, "Orphan")
    assert re.findall(r'<option value="(\w*)"[^>]*selected', orphan) == [""]  # the placeholder
    assert "Its schedule PSGONE1 is not listed; choose…" in orphan
    assert "schedule PSGONE1 is missing in PagerDuty" in orphan


# --- broken connections keep what the admin needs -----------------------------------------------


def test_an_invalid_connection_keeps_account_who_connected_and_the_last_good_sync(
    client, world, session
) -> None:
    conn = _oauth_connection(session, world)
    good = _run(session, conn, "succeeded", minutes_ago=90)
    _run(session, conn, "failed", minutes_ago=30)
    conn.status = ConnectionStatus.NEEDS_REAUTH
    conn.last_error = messages.REAUTH
    rotation = factories.rotation(session, world.ws, [world.owner], name="Primary")
    rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, "PSPRIMA"
    rotation.bound_at = rotation.last_synced_at = utcnow() - timedelta(hours=2)
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert messages.REAUTH in html.unescape(page)
    assert _dd(page, "account") == "acme (US)"
    assert _dd(page, "connected-by").startswith("OAuth 2.0 by Ada Admin")
    assert _dd(page, "acting-user").startswith("PagerDuty user Bob Builder")
    # The last *successful* sync, not the failed one after it.
    assert _dd(page, "last-good-sync").startswith(good.strftime("%Y-%m-%d %H:%M"))
    assert "1 h ago" in _dd(page, "last-good-sync")
    # And the failed attempt after it, with its reason.
    assert "failed: PagerDuty answered 401." in _dd(page, "last-sync")
    row = _row(page, "Primary")
    # A <time> in UTC to the second, which the browser shows in the viewer's own time zone.
    assert (
        f'not updating since <time datetime="{good:%Y-%m-%dT%H:%M:%S}Z" '
        f'title="{good:%Y-%m-%d %H:%M:%S} UTC" data-local>'
    ) in row
    # While connected, the same rotation is simply up to date.
    conn.status, conn.last_error = ConnectionStatus.CONNECTED, None
    session.commit()
    assert "not updating" not in _row(client.get("/panel").text, "Primary")


def test_an_invalid_api_key_without_a_sync_says_never(client, world, session) -> None:
    conn = factories.api_key_connection(
        session, world.ws, status=ConnectionStatus.INVALID, by=world.owner
    )
    conn.last_error = messages.KEY_REJECTED
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert _dd(page, "connected-by").startswith("API key by Olive Owner")
    assert _dd(page, "last-good-sync") == "never"


# --- no contradictory words ---------------------------------------------------------------------


def test_no_region_hint_when_both_regions_were_tried(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.INVALID)
    conn.last_error = messages.KEY_REJECTED
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert "rejected this API key in both regions (US and EU)" in page
    assert 'id="region-hint"' not in page
    assert "choose region EU" not in page
    # Nor under a refusal that is not about the region at all.
    conn.last_error = messages.NO_API_ACCESS
    session.commit()
    assert 'id="region-hint"' not in client.get("/panel").text
    # Nor for a key that worked and that PagerDuty refuses at a sync (deleted there).
    conn.last_error = sync_messages.INVALID_KEY
    session.commit()
    page = client.get("/panel").text
    assert "it was deleted, or belongs to a user who was removed" in page
    assert 'id="region-hint"' not in page


def test_a_member_is_told_to_ask_an_admin_not_to_log_in_again(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.NEEDS_REAUTH)
    conn.last_error = messages.REAUTH
    session.commit()
    # The sync that found the login refused wrote the admin's instructions as its error too.
    _run(session, conn, "failed", minutes_ago=1)
    session.query(SyncRun).update({SyncRun.error: sync_messages.OAUTH_REJECTED})
    session.commit()
    act_as(client, world.member)
    page = client.get("/panel").text
    text = page[page.index('id="status-text"') :]
    text = html.unescape(text[: text.index("</p>")])
    assert "Ask the workspace's Primary Owner or an Admin to log in to PagerDuty again" in text
    assert "Log in with OAuth 2.0 again" not in html.unescape(page)
    # The Member still reads when the last attempt was, and that it failed.
    assert _dd(page, "last-sync").endswith("— failed")
    # An admin reads why, and what to do.
    act_as(client, world.owner)
    assert "failed: " + sync_messages.OAUTH_REJECTED in _dd(client.get("/panel").text, "last-sync")


# --- an ended session ---------------------------------------------------------------------------


def test_an_ended_session_says_so_on_a_page_and_only_once(client, world) -> None:
    act_as(client, world.owner)
    client.get("/panel")  # the one-time "you are now acting as" is read
    # After an hour the browser drops the session cookie (its max age is the token's).
    client.cookies.delete(panel.IDENTITY_COOKIE, path="/")
    page = client.get("/panel")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Your session ended; sign in again." in page.text
    assert 'id="member-picker"' in page.text
    # Said once: the next visit is an ordinary first visit.
    again = client.get("/panel").text
    assert "Your session ended" not in again
    assert "Who are you?" in again


def test_a_form_posted_after_the_session_ended_answers_with_the_panel_not_json(
    client, world, session, sent
) -> None:
    act_as(client, world.owner)
    token = csrf(client)
    # The cookie still holds a token, now expired.
    expired = issue_token(world.ws.id, world.owner.id, world.owner.role, ttl_seconds=-60)
    client.cookies.set(panel.IDENTITY_COOKIE, expired, path="/")
    r = client.post("/panel/api-key", data={"api_key": KEY, "csrf_token": token})
    assert r.status_code == 303
    assert r.headers["location"] == "/panel"
    page = client.get("/panel")
    assert "text/html" in page.headers["content-type"]
    assert "Your session ended; sign in again." in page.text
    assert "must be typed again" in page.text
    assert KEY not in page.text
    assert "csrf" not in page.text.lower().replace('name="csrf_token"', "")
    assert sent.calls == []


# --- a refused field stays in its modal ---------------------------------------------------------


def test_a_refused_api_key_reopens_the_modal_with_one_plain_error_by_the_field(
    client, world, session, sent
) -> None:
    conn = factories.api_key_connection(session, world.ws, status=ConnectionStatus.INVALID)
    conn.last_error = messages.KEY_REJECTED
    session.commit()
    act_as(client, world.owner)
    bad = "u+has a space in it 1234"
    r = _post(client, "/panel/api-key", {"api_key": bad, "region": "us"})
    assert r.status_code == 303
    page = client.get("/panel").text
    modal = page[page.index('id="api-key-modal"') :]
    modal = modal[: modal.index("</dialog>")]
    assert modal.startswith(
        'id="api-key-modal" data-open-on-load aria-labelledby="api-key-modal-title">'
    )
    assert 'aria-invalid="true" aria-describedby="api_key-error"' in modal
    error = modal[modal.index('id="api_key-error"') :]
    assert "That does not look like a PagerDuty API key" in error
    # One error, in plain words, and not above the old refusal as a page notice.
    assert page.count("does not look like a PagerDuty API key") == 1
    assert "api_key must be" not in page
    assert 'class="notice error"' not in page
    assert bad not in page  # the typed value is never echoed back
    assert sent.calls == []
    # Shown once: a reload shows the modal closed again.
    assert 'id="api-key-modal" aria-labelledby="api-key-modal-title">' in client.get("/panel").text


def test_a_refused_client_secret_reopens_the_oauth_modal(client, world, sent) -> None:
    act_as(client, world.owner)
    _post(client, "/panel/oauth", {"client_id": "cid", "client_secret": "two words"})
    page = client.get("/panel").text
    assert 'id="oauth-modal" data-open-on-load aria-labelledby="oauth-modal-title">' in page
    assert 'id="client_secret-error"' in page
    assert "That does not look like a Client Secret" in page
    assert "two words" not in page


# --- rotations ----------------------------------------------------------------------------------


def test_on_duty_names_a_non_member_on_call_instead_of_nobody(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    session.add(
        PagerDutyUser(
            connection_id=conn.id,
            pagerduty_id="PUCONTR",
            name="Casey Contractor",
            email="casey@outside.example",
            email_key="casey@outside.example",
        )
    )
    session.add(
        PagerDutyOnCall(
            connection_id=conn.id, schedule_pagerduty_id="PSPRIMA", user_pagerduty_id="PUCONTR"
        )
    )
    rotation = factories.rotation(session, world.ws, [world.owner], name="Primary")
    rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, "PSPRIMA"
    rotation.bound_at = rotation.last_synced_at = utcnow()
    session.commit()
    _run(session, conn, "succeeded", minutes_ago=1)
    act_as(client, world.owner)
    cell = _row(client.get("/panel").text, "Primary")
    cell = cell[cell.index('class="on-duty"') :]
    assert "nobody" not in cell
    assert "Casey Contractor &lt;casey@outside.example&gt; (not a member)" in cell


def test_counts_are_in_singular_or_plural_as_they_should(client, world, session) -> None:
    conn = factories.api_key_connection(session, world.ws, by=world.owner)
    session.add(PagerDutySchedule(connection_id=conn.id, pagerduty_id="PSPRIMA", name="Primary"))
    session.add(
        PagerDutyUser(connection_id=conn.id, pagerduty_id="PU1", name="One", email="one@x.example")
    )
    at = utcnow() - timedelta(seconds=30)
    session.add(
        SyncRun(
            connection_id=conn.id,
            generation=conn.generation,
            kind="scheduled",
            status="succeeded",
            started_at=at,
            finished_at=at,
            duration_ms=500,
            rows_updated=1,
        )
    )
    session.commit()
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert _dd(page, "schedule-count") == "1 schedule"
    assert _dd(page, "linked") == "0 of 1 user linked to members"
    assert "— succeeded, 1 change" in _dd(page, "last-sync")
    assert "1 changes" not in page


# --- the page itself ----------------------------------------------------------------------------


def test_no_dead_links_and_an_icon_of_its_own(client, world) -> None:
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert 'href="#"' not in page
    assert '<link rel="icon" href="data:image/svg+xml,' in page


def test_narrow_screens_have_a_layout_and_the_schedule_list_is_not_cut(client, world) -> None:
    act_as(client, world.owner)
    page = client.get("/panel").text
    assert "@media (max-width: 900px)" in page
    assert "max-width:180px" not in page  # cut "PagerDuty schedule…" to "PagerDuty schedul"


# --- OAuth scopes: one list -----------------------------------------------------------------------


def _documented_scopes(doc: str) -> list[str]:
    match = re.search(r"\*\*[Ss]copes(?:\s+to\s+tick\*\*)?: `([^`]+)`", doc)
    assert match, "the scopes are listed"
    return match.group(1).split()


def test_the_docs_list_the_scopes_the_login_asks_for() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    panel_doc = (ROOT / "docs" / "panel.md").read_text()
    assert _documented_scopes(api) == list(OAUTH_SCOPES)
    assert _documented_scopes(panel_doc) == list(OAUTH_SCOPES)
    assert "`oncalls.read` is not requested" not in api

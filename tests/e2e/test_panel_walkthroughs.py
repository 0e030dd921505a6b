"""The help article's walkthroughs in a real browser: headless Chromium drives the panel served
by the real API process, with live workers and the PagerDuty simulator; the simulator's consent
page is clicked like a person would (auto-approve off). A screenshot is taken at each step.

Order: API key (connect, bind, on-call change + Sync now), narrow screens, a refused key kept
in its modal, a rejected replacement key (the working key keeps serving), a key of another
PagerDuty account (what a switch would do, then "Keep acme"), a member's
view, an ended session, the key deleted in PagerDuty (invalid: what remains; then a new key),
Uninstall (Connected to PagerDuty > Disconnect > Confirm), then OAuth 2.0 (Deny once, then
Authorize as a PagerDuty user who is not an Admin: the panel warns; then "Log in again with
OAuth" opens with the stored app).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy.orm import Session

from pagerduty_sim.server import SimulatorHandle
from rrpd.dev.seed import DEMO_BINDINGS, MANUAL_ONLY
from tests.support.accessibility import assert_accessible
from tests.support.browser import (
    NAMES,
    WAIT_MS,
    act_as,
    bind_demo_rotations,
    demo_workspace,
    panel_page,
    row,
)
from tests.support.stack import demo_api_key, demo_oauth_app
from workers.connections.status import connection_status

pytestmark = pytest.mark.integration

expect.set_options(timeout=WAIT_MS)


def no_sideways_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def focused(page: Page) -> str:
    """The id of the element that has the keyboard focus ("" for none)."""
    return str(page.evaluate("document.activeElement ? document.activeElement.id : ''"))


def focus_comes_back_to(page: Page, element_id: str) -> None:
    """After Escape: the modal's "close" event (a task the browser queues after the dialog
    hides) gives the focus back to ``element_id``; wait for that task, a few seconds at most."""
    try:
        page.wait_for_function(
            "(id) => document.activeElement && document.activeElement.id === id",
            arg=element_id,
            timeout=5_000,
        )
    except PlaywrightTimeout:
        raise AssertionError(f"the focus went to #{focused(page)}, not #{element_id}") from None


def tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until ``element_id`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if focused(page) == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id} (stuck on #{focused(page)})")


def tab_stays_inside(page: Page, dialog: str, first: str, last: str) -> None:
    """Tab and Shift+Tab go round the open modal's controls and never leave it."""
    page.focus(f"#{first}")
    for _ in range(8):
        page.keyboard.press("Tab")
        inside = f"document.querySelector('#{dialog}').contains(document.activeElement)"
        assert page.evaluate(inside), f"Tab left #{dialog} for #{focused(page)}"
    page.focus(f"#{first}")
    page.keyboard.press("Shift+Tab")
    assert focused(page) == last, f"Shift+Tab from the first control went to #{focused(page)}"
    page.keyboard.press("Tab")
    assert focused(page) == first, f"Tab from the last control went to #{focused(page)}"


def on_call(sim: SimulatorHandle, schedule: str) -> list[str]:
    ids = sim.control.get(f"/accounts/acme/schedules/{schedule}/oncall").json()["user_ids"]
    return [NAMES[i] for i in ids if i in NAMES]


def test_the_three_walkthroughs_in_the_browser(
    api_url: str, sim: SimulatorHandle, live_workers, session: Session, browser, shots
) -> None:
    seeded, alice, carol = demo_workspace(session)
    sim.control.post("/auto_approve", json={"enabled": False}).raise_for_status()

    page = panel_page(browser)
    context = page.context
    # Nothing the panel's pages ask for is missing (a favicon 404 on every page, once).
    missing: list[str] = []
    page.on(
        "response",
        lambda r: missing.append(r.url) if r.status == 404 and r.url.startswith(api_url) else None,
    )

    # --- Settings > Integrations, as the Primary Owner --------------------------------------
    page.goto(f"{api_url}/panel")
    expect(page.locator("#choose")).to_contain_text("Who are you?")
    shots(page, "01-choose-who-you-are")
    assert_accessible(page, "who are you")
    act_as(page, alice, "Alice")
    expect(page.locator("#connection")).to_have_attribute("data-status", "not_connected")
    expect(page.locator("#open-api-key")).to_have_text("Login using an API Key")
    expect(page.locator("#open-oauth")).to_have_text("Login using OAuth 2.0")
    for name in (*DEMO_BINDINGS, MANUAL_ONLY):
        expect(row(page, name).locator(".mode")).to_contain_text("Manual")
    shots(page, "02-integrations-not-connected")
    assert_accessible(page, "not connected", "not_connected")

    # --- Walkthrough 1: Login using an API Key ------------------------------------------------
    page.click("#open-api-key")
    expect(page.locator("#api-key-modal")).to_be_visible()
    page.fill("#api_key", demo_api_key(sim))
    shots(page, "03-api-key-modal")
    assert_accessible(page, "API key modal open")
    # PagerDuty answers the first validation request slowly, so "validating" can be seen.
    sim.control.post(
        "/faults", json={"kind": "latency", "latency_ms": 6000, "path_prefix": "/", "times": 1}
    ).raise_for_status()
    page.click("#save-api-key")
    expect(page.locator("#connection")).to_have_attribute("data-status", "validating")
    expect(page.locator("#status-text")).to_contain_text("Connecting to PagerDuty")
    # Since when (a <time> in this browser's zone), that it ends by itself, and a way out.
    expect(page.locator("#transition-since time")).to_have_attribute(
        "title", re.compile(r"\d\d:\d\d:\d\d UTC$")
    )
    expect(page.locator("#transition-way-out")).to_contain_text(
        "Round Robin gives up by itself within about a minute and says why here"
    )
    expect(page.locator("#start-over")).to_contain_text("Start over with other credentials")
    expect(page.locator("#open-api-key")).to_be_visible()
    expect(page.locator("#open-oauth")).to_be_visible()
    shots(page, "04-validating")
    assert_accessible(page, "validating", "validating")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(page.locator("#connected-button")).to_contain_text("Connected to PagerDuty")
    expect(page.locator("#account")).to_contain_text("acme")
    expect(page.locator("#open-disconnect")).to_be_hidden()  # until the button is clicked
    # The page keeps refreshing until the first sync has run, then says how it went.
    expect(page.locator("#last-sync")).to_have_attribute("data-outcome", "succeeded")
    expect(page.locator("#last-sync")).to_contain_text("succeeded")
    expect(page.locator("#first-sync")).to_have_count(0)
    expect(page.locator("#last-change")).not_to_contain_text("never")
    shots(page, "05-connected")
    assert_accessible(page, "connected", "connected")

    # Bind three rotations to the demo schedules; the fourth stays Manual.
    bind_demo_rotations(page)
    primary_now = on_call(sim, "PSPRIMA")
    assert primary_now, "the demo scenario has someone on call for Primary"
    expect(row(page, "Primary").locator(".on-duty-now")).to_have_text(", ".join(primary_now))
    expect(row(page, "Primary").locator(".mode")).to_contain_text("Primary On-Call")
    fts = row(page, "Follow-the-Sun").locator(".on-duty")
    expect(fts).to_contain_text("Erin")
    expect(fts).to_contain_text("Frank")  # v3: two people on call at once
    expect(row(page, MANUAL_ONLY).locator(".mode")).to_contain_text("Manual")
    shots(page, "06-rotations-bound")
    assert_accessible(page, "rotations bound", "connected")

    # Someone else goes on call in PagerDuty; "Sync now" brings it into the rotation.
    newcomer = next(uid for uid in ("PUCAROL", "PUBOB01") if NAMES[uid] not in primary_now)
    sim.control.post(
        "/accounts/acme/schedules/PSPRIMA/overrides",
        json={"user_id": newcomer, "start": "now", "duration_seconds": 3600},
    ).raise_for_status()
    assert on_call(sim, "PSPRIMA") == [NAMES[newcomer]]
    page.click("#sync-now")
    expect(page.locator(".notice.ok")).to_contain_text("Sync started")
    expect(row(page, "Primary").locator(".on-duty-now")).to_have_text(NAMES[newcomer])
    shots(page, "07-on-call-changed-after-sync-now")
    # The next handoff, under who is on duty, in this browser's time zone (UTC as the title).
    handoff = row(page, "Primary").locator(".on-duty .next-handoff time")
    if handoff.count():
        expect(handoff).to_have_attribute("title", re.compile(r"\d\d:\d\d:\d\d UTC$"))
    # Every time on the page in the viewer's own zone, UTC in the title (and the datetime).
    for zone, name in (("America/New_York", "EST"), ("Asia/Tokyo", "GMT+9")):
        viewer = browser.new_context(timezone_id=zone, locale="en-US")
        seen = viewer.new_page()
        seen.set_default_timeout(WAIT_MS)
        seen.goto(f"{api_url}/panel")
        act_as(seen, alice, "Alice")
        connected_at = seen.locator("#connected-by time")
        expect(connected_at).to_have_attribute("datetime", re.compile(r"Z$"))
        utc = datetime.fromisoformat(connected_at.get_attribute("datetime").replace("Z", "+00:00"))
        local = utc.astimezone(ZoneInfo(zone))
        expect(connected_at).to_have_attribute("title", f"{utc:%Y-%m-%d %H:%M:%S} UTC")
        # en-US: "Mon, Dec 7, 2026, 01:05:09 PM EST" in New York, "... GMT+9" in Tokyo.
        expect(connected_at).to_contain_text(re.compile(f"{local:%I:%M:%S}\\s{local:%p}"))
        expect(connected_at).to_contain_text(f"{local:%b} {local.day}, {local.year}")
        expect(connected_at).to_contain_text(name)
        utc_title = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        for t in seen.locator("#pagerduty time, #rotations time").all():
            expect(t).to_have_attribute("title", utc_title)
            expect(t).to_contain_text(name)
        viewer.close()

    # Narrow screens: the page never scrolls sideways, from a phone up to a tablet.
    for width in (360, 768):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        expect(row(page, "Primary").locator(".on-duty-now")).to_have_text(NAMES[newcomer])
        assert no_sideways_scroll(page), f"the page scrolls sideways at {width} px"
        if width == 360:
            shots(page, "16-narrow-screen-360px")
            assert_accessible(page, "360 px wide", "connected")
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.reload()

    # The keyboard alone: the menu and the API key modal open from it, focus goes to the key,
    # Tab stays inside, Escape closes it and gives the focus back to the button that opened it.
    tab_to(page, "connected-button")
    page.keyboard.press("Enter")
    expect(page.locator("#open-replace-api-key")).to_be_visible()
    tab_to(page, "open-replace-api-key")
    page.keyboard.press("Enter")
    expect(page.locator("#api-key-modal")).to_be_visible()
    assert focused(page) == "api_key"
    tab_stays_inside(page, "api-key-modal", "api_key", "save-api-key")
    page.keyboard.press("Escape")
    expect(page.locator("#api-key-modal")).to_be_hidden()
    focus_comes_back_to(page, "open-replace-api-key")
    # A key that cannot be one, typed and sent with Enter: the modal stays open with one plain
    # error next to the field, which has the focus.
    page.keyboard.press("Enter")
    expect(page.locator("#api-key-modal")).to_be_visible()
    assert focused(page) == "api_key"
    page.keyboard.type("u+not a key at all 0001")
    page.keyboard.press("Enter")
    expect(page.locator("#api_key-error")).to_be_visible()
    assert focused(page) == "api_key"
    expect(page.locator("#api-key-modal")).to_be_visible()
    expect(page.locator("#api_key-error")).to_contain_text(
        "That does not look like a PagerDuty API key"
    )
    expect(page.locator("#api_key")).to_have_value("")  # nothing typed is echoed back
    expect(page.locator(".notice.error")).to_have_count(0)
    shots(page, "17-refused-key-kept-in-the-modal")
    assert_accessible(page, "refused key in the modal")
    # A well-formed replacement key PagerDuty rejects: the working key keeps serving, and the
    # admin is told so (issue 19: new credentials never break working ones).
    page.fill("#api_key", "u+rejectedByPagerDuty01")
    page.click("#save-api-key")
    expect(page.locator("#pending-credential")).to_contain_text(
        "The new key was rejected; Round Robin still uses the previous one", timeout=30_000
    )
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(page.locator("#account")).to_contain_text("acme (US)")
    expect(page.locator("#connected-by")).to_contain_text("API key by Alice")
    expect(row(page, "Primary").locator(".mode")).not_to_contain_text("not updating")
    shots(page, "18-rejected-key-what-remains")
    assert_accessible(page, "rejected replacement key", "connected")
    # A proven key of the same account replaces the working one.
    page.click("#connected-button")
    page.click("#open-replace-api-key")
    page.fill("#api_key", demo_api_key(sim))
    page.click("#save-api-key")
    expect(page.locator("#pending-credential")).to_have_count(0, timeout=30_000)
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(row(page, "Primary").locator(".mode")).not_to_contain_text("not updating")
    # A key of another PagerDuty account is never swapped in silently (issue 19 item 3): the
    # admin reads what a switch does to each bound rotation, and keeps acme here.
    page.click("#connected-button")
    page.click("#open-replace-api-key")
    page.fill("#api_key", demo_api_key(sim, "euco-readonly"))
    page.click("#save-api-key")
    expect(page.locator("#account-change")).to_contain_text(
        "The new key belongs to PagerDuty account euco (Round Robin is connected to acme)",
        timeout=30_000,
    )
    changes = page.locator("#account-change-rotations")
    for name in DEMO_BINDINGS:
        expect(changes).to_contain_text(f"{name} becomes Manual")
    expect(page.locator("#confirm-account-change")).to_have_text("Switch accounts")
    expect(page.locator("#discard-pending")).to_have_text("Keep acme")
    shots(page, "20-account-change-confirm")
    page.click("#discard-pending")
    expect(page.locator("#pending-credential")).to_have_count(0)
    expect(page.locator("#account")).to_contain_text("acme (US)")
    expect(row(page, "Primary").locator(".mode")).to_contain_text("PagerDuty")

    # A plain member sees the state but not the controls.
    act_as(page, carol, "Carol")
    expect(page.locator("#status-text")).to_contain_text("Connected to PagerDuty")
    expect(page.locator("#connected-button")).to_have_count(0)
    expect(page.get_by_text("Disconnect from PagerDuty")).to_have_count(0)
    expect(page.locator("#sync-now")).to_have_count(0)
    expect(page.locator("button.bind")).to_have_count(0)
    shots(page, "08-member-view")
    assert_accessible(page, "member view", "connected")
    act_as(page, alice, "Alice")

    # The session ends (the browser drops its cookie after an hour) while a key is typed:
    # Save answers with the panel saying so, not an error page, and nothing is saved.
    page.click("#connected-button")
    page.click("#open-replace-api-key")
    page.fill("#api_key", "u+typedAfterTheHour01")
    context.clear_cookies(name="rrpd_panel_session")
    page.click("#save-api-key")
    expect(page.locator(".notice.error")).to_contain_text("Your session ended; sign in again.")
    expect(page.locator(".notice.error")).to_contain_text("must be typed again")
    assert "u+typedAfterTheHour01" not in page.content()
    expect(page.locator("#member-picker")).to_be_visible()
    shots(page, "19-session-ended")
    assert_accessible(page, "session ended")
    act_as(page, alice, "Alice")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    # A plain visit after the session ended says so too.
    context.clear_cookies(name="rrpd_panel_session")
    page.reload()
    expect(page.locator("#session-ended")).to_have_text("Your session ended; sign in again.")
    act_as(page, alice, "Alice")

    # A form posted from another origin carries the cookies but not the CSRF token: refused.
    page.goto(f"{sim.base_url}/_sim/health")
    page.evaluate(
        """(url) => { const f = document.createElement('form'); f.method = 'post';
        f.action = url; document.body.appendChild(f); f.submit(); }""",
        f"{api_url}/panel/disconnect",
    )
    page.wait_for_url(f"{api_url}/panel/disconnect")
    assert '"csrf_failed"' in page.content()
    page.goto(f"{api_url}/panel")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")

    # The key is deleted in PagerDuty: the next sync finds it refused, and the broken
    # connection still says what it is, since when rotations are not updating, and the way back.
    demo = next(k for k in sim.credentials()["api_keys"] if k["label"] == "demo-readonly")
    sim.control.post("/api_keys/demo-readonly/revoke").raise_for_status()
    page.click("#sync-now")
    expect(page.locator("#connection")).to_have_attribute("data-status", "invalid")
    expect(page.locator("#status-text")).to_contain_text("PagerDuty rejected this API key")
    expect(page.locator("#account")).to_contain_text("acme (US)")
    expect(page.locator("#connected-by")).to_contain_text("API key by Alice")
    expect(page.locator("#last-good-sync time")).to_have_count(1)
    expect(page.locator("#last-sync")).to_have_attribute("data-outcome", "failed")
    for name in DEMO_BINDINGS:
        expect(row(page, name).locator(".mode")).to_contain_text("not updating since")
    expect(page.locator("#open-api-key")).to_be_visible()
    shots(page, "22-invalid-what-remains")
    assert_accessible(page, "invalid", "invalid")
    # A new key (here the same one, created again) brings it back, rotations still bound.
    sim.control.post(
        "/api_keys",
        json={"label": demo["label"], "key": demo["key"], "account": demo["account"]},
    ).raise_for_status()
    page.click("#open-api-key")
    page.fill("#api_key", demo["key"])
    page.click("#save-api-key")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    for name in DEMO_BINDINGS:
        expect(row(page, name).locator(".mode")).to_contain_text("PagerDuty")
        expect(row(page, name).locator(".mode")).not_to_contain_text("not updating")

    # --- Walkthrough 3: How to Uninstall (with the keyboard alone) -----------------------------
    tab_to(page, "connected-button")
    page.keyboard.press("Enter")
    expect(page.locator("#open-disconnect")).to_be_visible()
    expect(page.locator("#open-disconnect")).to_have_text("Disconnect from PagerDuty")
    # New credentials without a disconnect, from the same menu.
    expect(page.locator("#open-replace-api-key")).to_have_text("Replace API key")
    expect(page.locator("#open-reauth-oauth")).to_have_text("Log in again with OAuth")
    shots(page, "09-connected-menu-disconnect")
    assert_accessible(page, "connected menu open", "connected")
    tab_to(page, "open-disconnect")
    page.keyboard.press("Enter")
    expect(page.locator("#disconnect-modal")).to_be_visible()
    # Cancel first: Enter on it never disconnects by accident.
    assert focused(page) == "cancel-disconnect"
    tab_stays_inside(page, "disconnect-modal", "cancel-disconnect", "confirm-disconnect")
    page.keyboard.press("Escape")
    expect(page.locator("#disconnect-modal")).to_be_hidden()
    focus_comes_back_to(page, "open-disconnect")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    page.keyboard.press("Enter")
    expect(page.locator("#disconnect-modal")).to_be_visible()
    expect(page.locator("#disconnect-modal")).to_contain_text("will revert to Manual")
    listed = page.locator("#disconnect-rotations li")
    expect(listed).to_have_count(len(DEMO_BINDINGS))
    for name in DEMO_BINDINGS:
        expect(listed.filter(has_text=name)).to_have_count(1)
    shots(page, "10-confirm-disconnect")
    assert_accessible(page, "disconnect confirmation", "connected")
    page.keyboard.press("Tab")
    assert focused(page) == "confirm-disconnect"
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_attribute("data-status", "not_connected")
    expect(page.locator(".notice.ok")).to_contain_text(
        f"Disconnected; {len(DEMO_BINDINGS)} rotations are now Manual"
    )
    for name in (*DEMO_BINDINGS, MANUAL_ONLY):
        expect(row(page, name).locator(".mode")).to_contain_text("Manual")
    expect(row(page, "Primary").locator(".on-duty-now")).to_have_text(NAMES[newcomer])  # kept
    shots(page, "11-disconnected-rotations-manual")
    assert_accessible(page, "disconnected", "not_connected")

    # --- Walkthrough 2: Login using OAuth 2.0 ---------------------------------------------------
    oauth_app = demo_oauth_app(sim)
    # Authorized by Bob, a PagerDuty "user" (not an Admin): the panel must say so.
    bob_app = demo_oauth_app(sim, "demo-oauth-bob")

    def save_oauth(app: dict[str, str]) -> None:
        page.click("#open-oauth")
        expect(page.locator("#oauth-modal")).to_be_visible()
        page.fill("#client_id", app["client_id"])
        page.fill("#client_secret", app["client_secret"])

    # The OAuth modal from the keyboard: focus skips the read-only redirect URL to the Client ID,
    # Tab stays inside (the redirect URL and Copy included), Escape gives the focus back.
    tab_to(page, "open-oauth")
    page.keyboard.press("Enter")
    expect(page.locator("#oauth-modal")).to_be_visible()
    assert focused(page) == "client_id"
    tab_stays_inside(page, "oauth-modal", "oauth-redirect-url", "save-oauth")
    page.keyboard.press("Escape")
    expect(page.locator("#oauth-modal")).to_be_hidden()
    focus_comes_back_to(page, "open-oauth")
    save_oauth(oauth_app)
    # What to register in PagerDuty: the exact redirect URL (copyable) and the scopes.
    expect(page.locator("#oauth-redirect-url")).to_have_value(
        f"{api_url}/v1/pagerduty/oauth/callback"
    )
    expect(page.locator("#oauth-scopes")).to_have_text(
        "openid users.read schedules.read oncalls.read"
    )
    page.click("#copy-redirect-url")
    expect(page.locator("#copy-redirect-url")).to_have_text("Copied")
    shots(page, "12-oauth-modal")
    assert_accessible(page, "OAuth modal open")
    page.click("#save-oauth")
    page.wait_for_url(re.compile(r".*/identity/oauth/authorize\?.*"))
    expect(page.locator("#authorize")).to_have_text("Authorize")
    shots(page, "13-pagerduty-consent-page")
    page.click("#deny")
    page.wait_for_url(re.compile(r".*/panel\?pagerduty=denied.*"))
    expect(page.locator(".notice.error")).to_contain_text("access was denied")
    expect(page.locator("#connection")).to_have_attribute("data-status", "not_connected")
    shots(page, "14-oauth-denied")
    assert_accessible(page, "OAuth denied", "not_connected")

    save_oauth(bob_app)
    page.click("#save-oauth")
    page.wait_for_url(re.compile(r".*/identity/oauth/authorize\?.*"))
    page.click("#authorize")
    page.wait_for_url(re.compile(r".*/panel\?pagerduty=connecting.*"))
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(page.get_by_text("Finishing the connection")).to_have_count(0)  # outcome known
    expect(page.locator("#pagerduty")).to_contain_text("OAuth 2.0")
    expect(page.locator("#connected-button")).to_contain_text("Connected to PagerDuty")
    # Which PagerDuty user the connection acts as, and the warning of the help article.
    expect(page.locator("#acting-user")).to_contain_text("PagerDuty user Bob <bob@example.com>")
    expect(page.locator("#acting-user-role")).to_have_attribute("data-role", "user")
    expect(page.locator("#acting-user-role")).to_have_text(
        "user (may not see every schedule and user)"
    )
    # The status document says the same as fields, remembered at connect from /users/me.
    session.rollback()
    acting = connection_status(session, seeded.workspace_id).acting_user
    assert acting is not None
    assert (acting.name, acting.email, acting.role) == ("Bob", "bob@example.com", "user")
    assert acting.sees_everything is False
    expect(page.locator("#connection-notice")).to_contain_text(
        "This connection acts as Bob, whose PagerDuty role (user) may not see every schedule"
    )
    shots(page, "15-oauth-connected")
    assert_accessible(page, "connected with OAuth", "connected")

    # Log in again with OAuth over it: the modal uses the stored app and asks for nothing.
    page.click("#connected-button")
    page.click("#open-reauth-oauth")
    expect(page.locator("#oauth-modal")).to_be_visible()
    expect(page.locator("#oauth-modal-title")).to_have_text("Log in again with OAuth 2.0")
    expect(page.locator("#reauth-keeps-bindings")).to_contain_text("Rotations stay bound.")
    expect(page.locator("#stored-oauth-app")).to_contain_text(
        "Round Robin uses the OAuth app it already has for this workspace; its Client ID and "
        "Client Secret stay stored encrypted."
    )
    expect(page.locator("#use-different-app")).not_to_have_attribute("open", "")
    expect(page.locator("#client_id")).to_be_hidden()  # inside the closed "Use a different app"
    expect(page.locator("#save-oauth")).to_be_visible()
    shots(page, "21-oauth-relogin-stored-app")
    assert_accessible(page, "OAuth re-login with the stored app")
    page.keyboard.press("Escape")
    expect(page.locator("#oauth-modal")).to_be_hidden()

    assert missing == [], f"the panel's pages asked for what is not there: {missing}"
    assert len(shots.taken) == 22
    context.close()

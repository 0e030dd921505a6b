"""The panel's last three states in a real browser, each reached the way it happens for real
(the same stack as test_panel_walkthroughs.py: the API process, live workers, the simulator):

- ``needs_reauth``: PagerDuty's "Revoke All Tokens" for the OAuth app (simulator control), then
  **Sync now**: the sync's 401 makes the worker refresh, PagerDuty refuses the refresh token.
  What stays true, the way out (the OAuth modal with the stored app), a Member told to ask an
  admin; then logging in again brings the bound rotations back.
- ``disconnecting``: a test transaction holds a bound rotation's row lock, so the worker's
  disconnect (which locks the connection, then the bound rotations) waits in the middle: the
  page says what is happening and offers no control, to an admin or a Member. Released, the
  disconnect finishes and the page says what it did.
- the region fallback: an EU account's API key saved with region US ends ``connected`` with the
  notice that the EU region was used.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Rotation
from pagerduty_sim.server import SimulatorHandle
from rrpd.dev.seed import DEMO_BINDINGS, MANUAL_ONLY
from tests.support.accessibility import assert_accessible
from tests.support.browser import (
    WAIT_MS,
    act_as,
    bind_demo_rotations,
    demo_workspace,
    panel_page,
    row,
)
from tests.support.locks import waiting_on_a_lock
from tests.support.stack import demo_api_key, demo_oauth_app
from workers.core.db import get_engine

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

expect.set_options(timeout=WAIT_MS)
UTC_TITLE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def test_needs_reauth_disconnecting_and_the_region_fallback_in_the_browser(
    api_url: str, sim: SimulatorHandle, live_workers, session: Session, browser, shots
) -> None:
    seeded, alice, carol = demo_workspace(session)
    # The consent page answers at once, as Alice (a PagerDuty Admin) clicking Authorize.
    sim.control.post("/auto_approve", json={"enabled": True}).raise_for_status()

    page = panel_page(browser)
    page.goto(f"{api_url}/panel")
    act_as(page, alice, "Alice")

    # --- Connected with OAuth 2.0, the demo rotations bound -----------------------------------
    app = demo_oauth_app(sim)
    page.click("#open-oauth")
    page.fill("#client_id", app["client_id"])
    page.fill("#client_secret", app["client_secret"])
    page.click("#save-oauth")
    page.wait_for_url(re.compile(r".*/panel\?pagerduty=connecting.*"))
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(page.locator("#last-sync")).to_have_attribute("data-outcome", "succeeded")
    bind_demo_rotations(page)

    # --- needs_reauth: PagerDuty no longer accepts the login ----------------------------------
    revoked = sim.control.post("/oauth_apps/demo-oauth/revoke_all")
    revoked.raise_for_status()
    assert revoked.json()["revoked"] >= 2  # the access and the refresh token
    page.click("#sync-now")
    expect(page.locator("#connection")).to_have_attribute("data-status", "needs_reauth")
    status_text = page.locator("#status-text")
    expect(status_text).to_contain_text("PagerDuty no longer accepts this connection's login")
    expect(status_text).to_contain_text("Log in with OAuth 2.0 again to resume syncing")
    # What stays true: the account, who connected, whom it acts as, the last good sync.
    expect(page.locator("#account")).to_contain_text("acme (US)")
    expect(page.locator("#connected-by")).to_contain_text("OAuth 2.0 by Alice")
    expect(page.locator("#acting-user")).to_contain_text("PagerDuty user Alice")
    expect(page.locator("#last-good-sync time")).to_have_attribute("title", UTC_TITLE)
    expect(page.locator("#last-sync")).to_have_attribute("data-outcome", "failed")
    for name in DEMO_BINDINGS:
        expect(row(page, name).locator(".mode")).to_contain_text("PagerDuty")
        expect(row(page, name).locator(".not-updating")).to_contain_text("not updating since")
    expect(row(page, MANUAL_ONLY).locator(".not-updating")).to_have_count(0)
    expect(page.locator("#region-hint")).to_have_count(0)  # the region is not the cause
    expect(page.locator("#sync-now")).to_have_count(0)
    expect(page.locator("#open-disconnect")).to_be_visible()
    shots(page, "23-needs-reauth-what-remains")
    assert_accessible(page, "needs_reauth", "needs_reauth")

    # The way out: the OAuth modal opens with the stored app, asking for nothing.
    expect(page.locator("#open-oauth")).to_have_text("Log in again with OAuth 2.0")
    page.click("#open-oauth")
    expect(page.locator("#oauth-modal")).to_be_visible()
    expect(page.locator("#oauth-modal-title")).to_have_text("Log in again with OAuth 2.0")
    expect(page.locator("#reauth-keeps-bindings")).to_contain_text("Rotations stay bound.")
    expect(page.locator("#stored-oauth-app")).to_contain_text(
        "Round Robin uses the OAuth app it already has for this workspace"
    )
    expect(page.locator("#client_id")).to_be_hidden()  # inside the closed "Use a different app"
    shots(page, "24-needs-reauth-relogin-stored-app")
    assert_accessible(page, "needs_reauth: log in again")
    page.keyboard.press("Escape")
    expect(page.locator("#oauth-modal")).to_be_hidden()

    # A Member is told whom to ask, and has no control.
    act_as(page, carol, "Carol")
    expect(page.locator("#connection")).to_have_attribute("data-status", "needs_reauth")
    expect(status_text).to_contain_text(
        "Ask the workspace's Primary Owner or an Admin to log in to PagerDuty again"
    )
    # Nowhere the admin's instructions, which a Member cannot follow; still when it last failed.
    expect(page.locator("#pagerduty")).not_to_contain_text("Log in with OAuth 2.0 again")
    expect(page.locator("#last-sync")).to_contain_text(re.compile(r"— failed$"))
    expect(page.locator("#connection button")).to_have_count(0)
    expect(page.locator("#account")).to_contain_text("acme (US)")
    expect(row(page, "Primary").locator(".not-updating")).to_contain_text("not updating since")
    shots(page, "25-needs-reauth-member-view")
    assert_accessible(page, "needs_reauth, a Member", "needs_reauth")
    act_as(page, alice, "Alice")

    # Logging in again with the stored app (Save only) resumes syncing; rotations stayed bound.
    page.click("#open-oauth")
    page.click("#save-oauth")
    page.wait_for_url(re.compile(r".*/panel\?pagerduty=connecting.*"))
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    for name in DEMO_BINDINGS:
        expect(row(page, name).locator(".mode")).to_contain_text("PagerDuty")
        expect(row(page, name).locator(".not-updating")).to_have_count(0)

    # --- disconnecting, held in the middle by a bound rotation's row lock ----------------------
    engine = get_engine()
    holder = Session(engine)
    seen = panel_page(browser)  # a Member, in a browser of their own
    try:
        holder.execute(
            select(Rotation).where(Rotation.id == seeded.rotations["Primary"]).with_for_update()
        ).one()
        page.click("#connected-button")
        page.click("#open-disconnect")
        page.click("#confirm-disconnect")
        expect(page.locator("#connection")).to_have_attribute("data-status", "disconnecting")
        assert waiting_on_a_lock(), "the disconnect never queued behind the held rotation"
        expect(status_text).to_contain_text(
            "Disconnecting from PagerDuty… bound rotations go back to Manual."
        )
        since = page.locator("#transition-since")
        expect(since).to_contain_text(re.compile(r"Since .+\. This page refreshes by itself\."))
        expect(since.locator("time")).to_have_attribute("title", UTC_TITLE)
        expect(page.locator("#transition-way-out")).to_have_text(
            "It completes by itself: Round Robin keeps at it until it is done, even after a "
            "restart. Nothing to do."
        )
        # No control for anyone while it runs.
        expect(page.locator("#pagerduty button, #pagerduty summary")).to_have_count(0)
        expect(page.locator("#rotations button")).to_have_count(0)
        shots(page, "26-disconnecting")
        assert_accessible(page, "disconnecting", "disconnecting")
        # A Member, in a browser of their own, reads the same and has no control either.
        seen.goto(f"{api_url}/panel")
        act_as(seen, carol, "Carol")
        expect(seen.locator("#connection")).to_have_attribute("data-status", "disconnecting")
        expect(seen.locator("#transition-way-out")).to_contain_text("It completes by itself")
        expect(seen.locator("#pagerduty button, #rotations button")).to_have_count(0)
        assert waiting_on_a_lock(timeout=1), "the disconnect finished while it was held"
    finally:
        holder.rollback()  # releases the lock: the disconnect goes on
        holder.close()
        seen.context.close()
    expect(page.locator("#connection")).to_have_attribute("data-status", "not_connected")
    expect(page.locator(".notice.ok")).to_contain_text(
        f"Disconnected; {len(DEMO_BINDINGS)} rotations are now Manual"
    )
    for name in (*DEMO_BINDINGS, MANUAL_ONLY):
        expect(row(page, name).locator(".mode")).to_contain_text("Manual")

    # --- The region fallback: an EU account's key, saved with region US ------------------------
    page.click("#open-api-key")
    page.fill("#api_key", demo_api_key(sim, "euco-readonly"))
    expect(page.locator("#api_key_region")).to_have_value("us")
    page.click("#save-api-key")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(page.locator("#connection-notice")).to_contain_text(
        "This API key belongs to a PagerDuty account in the EU region, not the US region that "
        "was chosen; Round Robin connected to PagerDuty EU"
    )
    expect(page.locator("#account")).to_contain_text("euco (EU)")
    expect(page.locator("#last-sync")).to_have_attribute("data-outcome", "succeeded")
    shots(page, "27-region-fallback-notice")
    assert_accessible(page, "region fallback notice", "connected")

    assert len(shots.taken) == 5
    page.context.close()

"""The on-call report page in a real browser, over history the real stack wrote: Alice connects
the demo account with its API key and binds the demo rotations in the panel; the sync puts the
demo scenario's people on duty (and opens their intervals); she opens **On-call report** from
the side bar and reads a row per person with a bar. Carol (a Member) has no link and is refused.
axe-core checks the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from pagerduty_sim.server import SimulatorHandle
from tests.support.accessibility import assert_accessible
from tests.support.browser import WAIT_MS, act_as, bind_demo_rotations, demo_workspace, panel_page
from tests.support.stack import demo_api_key

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

expect.set_options(timeout=WAIT_MS)


def test_an_admin_opens_the_on_call_report_and_reads_a_bar_per_person(
    api_url: str, sim: SimulatorHandle, live_workers, session: Session, browser, shots
) -> None:
    _seeded, alice, carol = demo_workspace(session)
    page = panel_page(browser)
    page.goto(f"{api_url}/panel")
    act_as(page, alice, "Alice")
    page.click("#open-api-key")
    page.fill("#api_key", demo_api_key(sim))
    page.click("#save-api-key")
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    bind_demo_rotations(page)
    page.wait_for_timeout(1500)  # on duty for at least a whole second

    page.click("#nav-report")
    expect(page).to_have_url(re.compile(r".*/panel/on-call-report$"))
    expect(page.locator("h1")).to_have_text("On-call report")
    expect(page.locator("#report-zone")).to_contain_text("UTC")
    rows = page.locator("#report-table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 1  # the demo scenario always has someone on call in Primary
    first = rows.first
    expect(first.locator(".shifts")).to_have_text(re.compile(r"^\d+$"))
    expect(first.locator(".on-duty")).to_have_text(re.compile(r"^(\d[\d,]* h \d\d min|\d+ s)$"))
    expect(first.locator(".bar")).to_have_attribute("aria-label", re.compile(r"on duty: "))
    expect(page.locator("#report-csv")).to_be_visible()
    shots(page, "on-call-report")
    assert_accessible(page, "on-call report")

    # One rotation only, through the picker.
    page.select_option("#rotation", label="Primary")
    page.click("#show-report")
    expect(page).to_have_url(re.compile(r"rotation_id=[0-9a-f-]{36}"))
    expect(page.locator("#report-table tbody tr").first).to_be_visible()

    member = panel_page(browser)
    member.goto(f"{api_url}/panel")
    act_as(member, carol, "Carol")
    expect(member.locator("#nav-report")).to_have_count(0)
    answer = member.goto(f"{api_url}/panel/on-call-report")
    assert answer is not None
    assert answer.status == 403
    expect(member.locator("#report-error")).to_contain_text("Only the workspace's Primary Owner")

"""What the panel's browser tests share: the wait, the demo's names and the steps every
walkthrough takes (act as a member, find a rotation's row, bind the demo rotations)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page, expect
from sqlalchemy.orm import Session

from rrpd.dev.seed import DEMO_BINDINGS, Seeded, seed_demo

WAIT_MS = 45_000
# Demo scenario user ids -> the seeded members' display names.
NAMES = {
    "PUALICE": "Alice",
    "PUBOB01": "Bob",
    "PUCAROL": "Carol",
    "PUDAVE1": "Dave",
    "PUERIN1": "Erin",
    "PUFRANK": "Frank",
}


def demo_workspace(session: Session) -> tuple[Seeded, str, str]:
    """The demo workspace, committed for the API and the workers; and the member ids of Alice
    (its Primary Owner) and Carol (a Member), for the member picker."""
    seeded = seed_demo(session)
    session.commit()
    return (
        seeded,
        str(seeded.members["alice@example.com"]),
        str(seeded.members["carol@example.com"]),
    )


def panel_page(browser: Any) -> Page:
    """A page in a browser context of its own (its own session cookie), desktop-sized."""
    page: Page = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-rotation="{name}"]')


def act_as(page: Page, member_id: str, name: str) -> None:
    page.select_option("#member-picker", member_id)
    page.click("#act-as")
    expect(page.locator("#acting-as")).to_have_text(name)


def bind_demo_rotations(page: Page) -> None:
    """Bind each demo rotation to its schedule from the panel, and wait until all are filled in."""
    page.reload()  # the first sync has mirrored the schedules by now, or the reload shows them
    for name, schedule in DEMO_BINDINGS.items():
        expect(row(page, name).locator("select")).to_be_visible()
        expect(row(page, name).locator(f'option[value="{schedule}"]')).to_have_count(1)
        row(page, name).locator("select").select_option(schedule)
        row(page, name).locator("button.bind").click()
        expect(row(page, name).locator(".mode")).to_contain_text("PagerDuty")
    expect(page.locator(".mode .spinner")).to_have_count(0)  # every binding filled in

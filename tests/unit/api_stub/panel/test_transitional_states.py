"""The transitional states say since when, that they end by themselves, and (validating) how an
admin starts over: issue 20 item 1, "transitional states with elapsed time and a way out"."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, RotationMode, utcnow
from tests.support import factories
from tests.support.api import World, act_as, csrf

KEY = "u+panelKeyBBBBBBBBBBB"


def _connection(session: Session, world: World, status: ConnectionStatus) -> PagerDutyConnection:
    conn = factories.api_key_connection(session, world.ws, status=status, by=world.owner)
    conn.status_changed_at = (utcnow() - timedelta(seconds=20)).replace(microsecond=0)
    session.commit()
    return conn


def _block(page: str) -> str:
    """The connection block (#connection), as text with its <time> elements kept."""
    block = page[page.index('id="connection"') :]
    return block[: block.index('<div class="card" id="rotations">')]


def _text(fragment: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</p>', fragment, re.S)
    assert match, f"#{element_id} is shown"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def test_validating_says_since_when_that_it_gives_up_by_itself_and_how_to_start_over(
    client: TestClient, world: World, session: Session
) -> None:
    conn = _connection(session, world, ConnectionStatus.VALIDATING)
    since = conn.status_changed_at
    act_as(client, world.owner)
    block = _block(client.get("/panel").text)
    assert "Connecting to PagerDuty… Checking the PagerDuty credentials." in html.unescape(block)
    # Since when, as the <time> the viewer's browser shows in their own zone.
    assert (
        f'Since <time datetime="{since:%Y-%m-%dT%H:%M:%S}Z" '
        f'title="{since:%Y-%m-%d %H:%M:%S} UTC" data-local>'
    ) in block
    assert _text(block, "transition-since").endswith("This page refreshes by itself.")
    assert _text(block, "transition-way-out") == (
        "If the check does not finish, Round Robin gives up by itself within about a minute "
        "and says why here."
    )
    # The way out: the login buttons, whose modals are on the page.
    assert "Start over with other credentials" in _text(block, "start-over")
    assert 'data-open="api-key-modal" id="open-api-key"' in block
    assert 'data-open="oauth-modal" id="open-oauth"' in block
    page = client.get("/panel").text
    assert '<dialog id="api-key-modal"' in page
    assert '<dialog id="oauth-modal"' in page


def test_a_new_key_while_validating_starts_over(
    client: TestClient, world: World, session: Session, sent
) -> None:
    conn = _connection(session, world, ConnectionStatus.VALIDATING)
    generation = conn.generation
    act_as(client, world.owner)
    r = client.post(
        "/panel/api-key", data={"api_key": KEY, "region": "eu", "csrf_token": csrf(client)}
    )
    assert r.status_code == 303
    session.expire_all()
    again = session.get(PagerDutyConnection, conn.id)
    assert again is not None
    assert again.status == ConnectionStatus.VALIDATING
    assert again.generation > generation  # the check under way can no longer write
    assert (again.api_key, again.region) == (KEY, "eu")
    assert sent.names() == ["pagerduty.validate_api_key"]


def test_a_member_reads_validating_without_controls(
    client: TestClient, world: World, session: Session
) -> None:
    _connection(session, world, ConnectionStatus.VALIDATING)
    act_as(client, world.member)
    page = client.get("/panel").text
    block = _block(page)
    assert _text(block, "transition-since").startswith("Since ")
    assert "gives up by itself within about a minute" in _text(block, "transition-way-out")
    assert "Primary Owner or an Admin can start over" in _text(block, "ask-admin")
    assert 'id="start-over"' not in block
    assert "<button" not in block
    assert "<dialog id=" not in page


def test_disconnecting_says_since_when_and_that_it_completes_by_itself(
    client: TestClient, world: World, session: Session
) -> None:
    conn = _connection(session, world, ConnectionStatus.DISCONNECTING)
    since = conn.status_changed_at
    for who in (world.owner, world.member):
        act_as(client, who)
        block = _block(client.get("/panel").text)
        assert "Disconnecting from PagerDuty…" in html.unescape(block)
        assert f'Since <time datetime="{since:%Y-%m-%dT%H:%M:%S}Z"' in block
        assert _text(block, "transition-way-out") == (
            "It completes by itself: Round Robin keeps at it until it is done, even after a "
            "restart. Nothing to do."
        )
        assert "<button" not in block


def test_disconnecting_offers_no_rotation_control_either(
    client: TestClient, world: World, session: Session
) -> None:
    """The disconnect is making every bound rotation Manual: no "Make Manual" beside it."""
    conn = _connection(session, world, ConnectionStatus.CONNECTED)
    rotation = factories.rotation(session, world.ws, [world.owner], name="Primary")
    rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, "PSPRIMA"
    rotation.bound_at = rotation.last_synced_at = utcnow()
    session.commit()
    act_as(client, world.owner)
    assert 'class="make-manual"' in client.get("/panel").text  # connected: the admin may
    conn.status = ConnectionStatus.DISCONNECTING
    session.commit()
    page = client.get("/panel").text
    rotations = page[page.index('<div class="card" id="rotations">') :]
    assert 'data-rotation="Primary"' in rotations
    assert "<button" not in rotations[: rotations.index("</table>")]
    assert "/panel/rotations/" not in page

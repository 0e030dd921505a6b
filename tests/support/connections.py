"""Connections in the states the connect and disconnect tests start from: a key being
validated, an OAuth login whose consent the simulator gave, a login still pending."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    Role,
    SyncRun,
    utcnow,
)
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.stack import demo_oauth_app
from workers.core.access import Actor
from workers.core.settings import get_settings
from workers.pagerduty import oauth


def validating_key_connection(session: Session, key: str, region: str = "us"):
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    conn = factories.api_key_connection(
        session, ws, api_key=key, status=ConnectionStatus.VALIDATING, region=region, by=admin
    )
    session.commit()
    return conn


def pending_oauth_login(
    session: Session,
    sim: SimulatorHandle,
    app_label: str = "demo-oauth",
    scopes: tuple[str, ...] = oauth.DEFAULT_SCOPES,
    browser: httpx.Client | None = None,
):
    """What the API does on POST .../oauth and on the callback, with the browser's consent
    given by the simulator's auto-approve mode. ``sim`` may be an ``InProcessPagerDuty`` too,
    with its ``browser`` (tests/support/fake_oauth.py)."""
    oauth_app = demo_oauth_app(sim, app_label)
    settings = get_settings()
    ws = factories.workspace(session)
    admin = factories.member(session, ws, role=Role.ADMIN)
    state, verifier = oauth.new_state(), oauth.new_code_verifier()
    url = oauth.build_authorization_url(
        settings.pagerduty_identity_url,
        oauth_app["client_id"],
        settings.oauth_redirect_uri,
        scopes,
        state,
        verifier,
    )
    consent = (browser.get if browser else httpx.get)(url, follow_redirects=False)
    assert consent.status_code in (302, 303), consent.text
    query = parse_qs(urlsplit(consent.headers["location"]).query)
    assert query["state"] == [state]
    conn = PagerDutyConnection(
        workspace_id=ws.id,
        auth_method=AuthMethod.OAUTH,
        region="us",
        status=ConnectionStatus.VALIDATING,
        connected_by_member_id=admin.id,
    )
    session.add(conn)
    session.flush()
    auth = OAuthAuthorization(
        workspace_id=ws.id,
        connection_id=conn.id,
        state_hash=hashlib.sha256(state.encode()).hexdigest(),
        code_verifier=verifier,
        client_id=oauth_app["client_id"],
        client_secret=oauth_app["client_secret"],
        region="us",
        code=query["code"][0],
        requested_by_member_id=admin.id,
        expires_at=utcnow() + timedelta(minutes=10),
        consumed_at=utcnow(),
        code_received_at=utcnow(),
    )
    session.add(auth)
    session.commit()
    return conn, auth


def pending_login(  # type: ignore[no-untyped-def]
    session, workspace_id, connection_id=None, *, consumed=False, code=None, issued_tokens=None
) -> uuid.UUID:
    """A login row. ``consumed``: its callback came (a finished or failed login, as the rows
    earlier versions kept after a denial or an error)."""
    auth = OAuthAuthorization(
        workspace_id=workspace_id,
        connection_id=connection_id,
        state_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        code_verifier="verifier",
        client_id="client",
        client_secret="secret",
        region="us",
        code=code,
        issued_tokens=issued_tokens,
        expires_at=utcnow() + timedelta(minutes=10),
        consumed_at=utcnow() if consumed else None,
    )
    session.add(auth)
    session.commit()
    return auth.id


def log_in_with_oauth(
    actor: Actor, client_id: str | None = None, client_secret: str | None = None
) -> uuid.UUID:
    """POST .../oauth (no app: the stored one), the consent page (approved by the simulator's
    auto-approve mode), then the callback, each as the API does it; returns the login's id
    (the exchange task's argument, enqueued through the outbox)."""
    from workers.connections import oauth_login
    from workers.core.db import transaction

    with transaction() as s:
        start = oauth_login.start_oauth(s, actor, client_id, client_secret)
    consent = httpx.get(start.authorization_url, follow_redirects=False)
    assert consent.status_code in (302, 303), consent.text
    query = parse_qs(urlsplit(consent.headers["location"]).query)
    with transaction() as s:
        outcome = oauth_login.handle_oauth_callback(
            s, state=query["state"][0], code=query["code"][0]
        )
    assert outcome.result == "connecting", outcome
    return start.authorization_id


def wait_until(session: Session, what: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll ``what`` (fresh reads each time) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.expire_all()
        if value := what():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not done after {timeout}s")


def stored_connection(session: Session, cid: uuid.UUID) -> PagerDutyConnection:
    conn = session.get(PagerDutyConnection, cid)
    assert conn is not None
    return conn


def succeeded_sync(session: Session, cid: uuid.UUID, generation: int) -> SyncRun | None:
    """A succeeded sync run of the connection's ``generation`` (its credentials at the time)."""
    return session.scalars(
        select(SyncRun).where(
            SyncRun.connection_id == cid,
            SyncRun.generation == generation,
            SyncRun.status == "succeeded",
        )
    ).first()

"""API test helpers: a TestClient on the real app and database, captured task publishes, a
workspace with people of every role, a mirrored PagerDuty account, the panel's CSRF dance.

The fixtures are imported by the conftest of each api_stub test directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api_stub.app import create_app
from api_stub.auth import issue_token
from api_stub.panel import session as panel
from models import (
    ConnectionStatus,
    Member,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    Role,
    Workspace,
    normalize_email,
)
from tests.support import factories
from tests.support.outbox import CommittedTasks, as_call, paused_outbox


class Sent:
    """The tasks the API's transactions committed to the outbox (what will be published), in
    the shape of ``send_task`` calls; nothing relays them while a test runs."""

    @property
    def calls(self) -> list[dict[str, Any]]:
        return list(CommittedTasks(as_call))

    def names(self) -> list[str]:
        return [c["name"] for c in self.calls]


@pytest.fixture
def sent(db: str) -> Iterator[Sent]:
    with paused_outbox():
        yield Sent()


@pytest.fixture
def client(db: str, sent: Sent) -> Iterator[TestClient]:
    with TestClient(create_app(), follow_redirects=False) as c:
        yield c


@dataclass
class World:
    ws: Workspace
    owner: Member
    admin: Member
    member: Member
    other_ws: Workspace
    other_admin: Member

    def token(self, who: Member, role: str | None = None, **kw: Any) -> str:
        return issue_token(who.workspace_id, who.id, role or who.role, **kw)

    def headers(self, who: Member, role: str | None = None, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who, role, **kw)}"}


@pytest.fixture
def world(session: Session) -> World:
    ws = factories.workspace(session, "Acme")
    owner = factories.member(
        session, ws, "owner@acme.test", Role.PRIMARY_OWNER, display_name="Olive Owner"
    )
    admin = factories.member(session, ws, "admin@acme.test", Role.ADMIN, display_name="Ada Admin")
    member = factories.member(session, ws, "mo@acme.test", Role.MEMBER, display_name="Mo Member")
    other = factories.workspace(session, "Other")
    other_admin = factories.member(session, other, "admin@other.test", Role.ADMIN)
    session.commit()
    return World(ws, owner, admin, member, other, other_admin)


def mirror_user(session, conn, pd_id, name, email, member=None) -> PagerDutyUser:
    u = PagerDutyUser(
        connection_id=conn.id,
        pagerduty_id=pd_id,
        name=name,
        email=email,
        email_key=normalize_email(email),
        member_id=member.id if member else None,
    )
    session.add(u)
    return u


def mirror_schedule(session, conn, pd_id, name, users=()) -> PagerDutySchedule:
    s = PagerDutySchedule(connection_id=conn.id, pagerduty_id=pd_id, name=name)
    session.add(s)
    for pos, uid in enumerate(users):
        session.add(
            PagerDutyScheduleMember(
                connection_id=conn.id,
                schedule_pagerduty_id=pd_id,
                user_pagerduty_id=uid,
                position=pos,
            )
        )
    return s


def mirror(session, world, status=ConnectionStatus.CONNECTED):
    """A connected account: 5 users (3 linked), 3 schedules, on-call people."""
    conn = factories.api_key_connection(session, world.ws, status=status, by=world.owner)
    conn.pagerduty_subdomain = "acme"
    conn.key_level = "account"
    mirror_user(session, conn, "PU1", "Olive", "OWNER@acme.test", world.owner)
    mirror_user(session, conn, "PU2", "Ada", "admin@acme.test", world.admin)
    mirror_user(session, conn, "PU3", "Mo", "mo@acme.test", world.member)
    mirror_user(session, conn, "PU4", "Stranger One", "s1@elsewhere.test")
    mirror_user(session, conn, "PU5", "Stranger Two", "s2@elsewhere.test")
    mirror_schedule(session, conn, "PS1", "Primary On-Call", ["PU1", "PU2", "PU4"])
    mirror_schedule(session, conn, "PS2", "Secondary on-call", ["PU3"])
    mirror_schedule(session, conn, "PS3", "Database 100%_team", [])
    session.flush()
    for uid in ("PU1", "PU4", "PU5"):
        session.add(
            PagerDutyOnCall(
                connection_id=conn.id, schedule_pagerduty_id="PS1", user_pagerduty_id=uid
            )
        )
    session.add(
        PagerDutyOnCall(connection_id=conn.id, schedule_pagerduty_id="PS2", user_pagerduty_id="PU3")
    )
    session.commit()
    return conn


def url(world, suffix="") -> str:
    return f"/v1/workspaces/{world.ws.id}{suffix}"


def csrf(client: TestClient) -> str:
    page = client.get("/panel")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert match, "the panel renders a CSRF token in its forms"
    return match.group(1)


def act_as(client: TestClient, who) -> None:
    r = client.post("/panel/act-as", data={"member_id": str(who.id), "csrf_token": csrf(client)})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/panel"
    assert panel.IDENTITY_COOKIE in client.cookies

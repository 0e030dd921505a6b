"""API test helpers: a TestClient on the real app and database, captured task publishes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api_stub.app import create_app
from api_stub.auth import issue_token
from models import Member, Role, Workspace
from tests import factories
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

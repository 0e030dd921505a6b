"""Which PagerDuty user an OAuth connection acts as (workers/connections/acting_user.py):
remembered at connect from /users/me, null for an API key, the mirror's name for a login
connected before it was remembered."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from models import AuthMethod, PagerDutyUser
from tests.support import factories
from workers.connections.acting_user import ActingUserOut, acting_user_document, remember
from workers.pagerduty.records import User

pytestmark = pytest.mark.both_databases


def _oauth(session: Session):  # type: ignore[no-untyped-def]
    ws = factories.workspace(session, "Acme")
    conn = factories.api_key_connection(session, ws)
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    conn.pagerduty_user_id = "PUBOB01"
    session.flush()
    return conn


def test_an_oauth_login_acts_as_the_user_me_named_with_their_role(session: Session) -> None:
    conn = _oauth(session)
    remember(conn, User(id="PUBOB01", name="Bob", email="bob@example.com", role="user"))
    assert acting_user_document(session, conn) == ActingUserOut(
        pagerduty_user_id="PUBOB01",
        name="Bob",
        email="bob@example.com",
        role="user",
        sees_everything=False,
    )
    remember(conn, User(id="PUBOB01", name="Bob", email="bob@example.com", role="admin"))
    doc = acting_user_document(session, conn)
    assert doc is not None
    assert doc.sees_everything is True


def test_an_api_key_acts_as_no_one(session: Session) -> None:
    ws = factories.workspace(session, "Acme")
    conn = factories.api_key_connection(session, ws)
    remember(conn, User(id="PU1", name="Kay", email="kay@example.com", role="admin"))
    assert acting_user_document(session, conn) is None


def test_unknown_at_connect_takes_the_mirrors_name_and_no_role(session: Session) -> None:
    conn = _oauth(session)
    remember(conn, None)  # /users/me did not answer at connect
    doc = acting_user_document(session, conn)
    assert doc == ActingUserOut(
        pagerduty_user_id="PUBOB01", name=None, email=None, role=None, sees_everything=None
    )
    session.add(
        PagerDutyUser(
            connection_id=conn.id,
            pagerduty_id="PUBOB01",
            name="Bob Builder",
            email="bob@example.com",
            email_key="bob@example.com",
        )
    )
    session.flush()
    doc = acting_user_document(session, conn)
    assert doc is not None
    assert (doc.name, doc.email, doc.role) == ("Bob Builder", "bob@example.com", None)

"""Beat's periodic rounds other than the fan-out, on both databases (the local run's SQLite
too): ``pagerduty.refresh_expiring_tokens`` picks the OAuth connections whose token is near
expiry or idle for a day, deletes abandoned OAuth logins, and leaves validations alone (their
deadline ends a lost one: tests/unit/workers/deadlines/test_drive.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuthMethod, ConnectionStatus, OAuthAuthorization, PagerDutyConnection, utcnow
from tests.support import factories
from tests.support.outbox import captured_direct_publishes

pytestmark = pytest.mark.both_databases


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    with captured_direct_publishes(monkeypatch) as messages_sent:
        yield messages_sent


def _oauth(session: Session, *, expires_in: timedelta, refreshed_ago: timedelta | None) -> Any:
    now = utcnow()
    conn = PagerDutyConnection(
        workspace_id=factories.workspace(session).id,
        auth_method=AuthMethod.OAUTH,
        region="us",
        status=ConnectionStatus.CONNECTED,
        access_token="at-test",
        refresh_token="rt-test",
        access_token_expires_at=now + expires_in,
        token_refreshed_at=None if refreshed_ago is None else now - refreshed_ago,
        connected_at=now,
    )
    session.add(conn)
    session.flush()
    return conn


def test_the_refresh_round_enqueues_tokens_near_expiry_or_idle_for_a_day(
    session: Session, sent: list[dict[str, Any]]
) -> None:
    from tasks.connections import refresh_expiring_tokens

    expiring = _oauth(session, expires_in=timedelta(minutes=5), refreshed_ago=timedelta(hours=1))
    idle = _oauth(session, expires_in=timedelta(hours=20), refreshed_ago=timedelta(days=2))
    _oauth(session, expires_in=timedelta(hours=20), refreshed_ago=timedelta(hours=1))  # fresh
    factories.api_key_connection(session, factories.workspace(session))  # no token to refresh
    session.commit()

    result = refresh_expiring_tokens.run()

    assert result == {
        "refreshes_enqueued": 2,
        "stale_validations": 0,
        "abandoned_logins": 0,
        "expired_account_changes": 0,
    }
    refreshes = [m for m in sent if m["name"] == "pagerduty.refresh_token"]
    assert sorted(m["kwargs"]["connection_id"] for m in refreshes) == sorted(
        [str(expiring.id), str(idle.id)]
    )


def test_the_refresh_round_leaves_validations_to_their_deadline(
    session: Session, sent: list[dict[str, Any]]
) -> None:
    from tasks.connections import refresh_expiring_tokens

    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, status=ConnectionStatus.VALIDATING)
    conn.status_changed_at = utcnow() - timedelta(hours=1)
    session.commit()

    # The result keeps its keys (a public contract); nothing is swept any more.
    assert refresh_expiring_tokens.run() == {
        "refreshes_enqueued": 0,
        "stale_validations": 0,
        "abandoned_logins": 0,
        "expired_account_changes": 0,
    }

    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert stored is not None
    assert stored.status == ConnectionStatus.VALIDATING


def test_the_refresh_round_deletes_logins_an_hour_past_their_expiry(
    session: Session, sent: list[dict[str, Any]]
) -> None:
    """Nobody came back from PagerDuty's consent page: the login's client secret and PKCE
    verifier go an hour after it expired (within the hour a late callback reads "expired")."""
    from tasks.connections import refresh_expiring_tokens
    from tests.support.connections import pending_login

    ws = factories.workspace(session)
    session.commit()
    pending = pending_login(session, ws.id)
    expired_lately, abandoned = pending_login(session, ws.id), pending_login(session, ws.id)
    now = utcnow()
    session.get(OAuthAuthorization, expired_lately).expires_at = now - timedelta(minutes=30)
    session.get(OAuthAuthorization, abandoned).expires_at = now - timedelta(hours=1, seconds=1)
    session.commit()

    assert refresh_expiring_tokens.run()["abandoned_logins"] == 1

    session.expire_all()
    assert set(session.scalars(select(OAuthAuthorization.id))) == {pending, expired_lately}

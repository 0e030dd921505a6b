"""OAuth token upkeep (workers/connections/tokens.py) against the in-process PagerDuty identity
host (tests/support/fake_oauth.py): refresh ahead of expiry, rotation, a revoked grant, a token
endpoint that does not answer. What a user would notice: the connection's status and words, the
token the sync gets, what is stored. Fifty workers refreshing at once is tests/integration/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection, utcnow
from tests.support.connections import pending_oauth_login, stored_connection
from tests.support.fake_oauth import InProcessOAuth, in_process_oauth
from tests.support.outbox import paused_outbox
from tests.support.secrets import stored_ciphertext
from workers.connections import messages, oauth_exchange, tokens
from workers.pagerduty.errors import InvalidGrant, RateLimited, Transient

# On both databases; the clock lane runs it at other hours too.
pytestmark = [pytest.mark.both_databases, pytest.mark.clock]


@pytest.fixture
def fake(db: str) -> Iterator[InProcessOAuth]:
    with in_process_oauth() as identity, paused_outbox():  # the first sync stays unsent
        yield identity


def _connected(session: Session, fake: InProcessOAuth) -> uuid.UUID:
    conn, auth = pending_oauth_login(session, fake.pagerduty, browser=fake.http)
    result = oauth_exchange.exchange_oauth_code(
        auth.id, client_factory=fake.pagerduty.reader_factory, oauth_factory=fake.factory
    )
    assert result.outcome == "connected"
    return conn.id


def _stored(session: Session, cid: uuid.UUID) -> PagerDutyConnection:
    session.expire_all()
    return stored_connection(session, cid)


def _expire(session: Session, cid: uuid.UUID) -> None:
    """Our record says the access token has expired (as it does between two daily syncs)."""
    _stored(session, cid).access_token_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()


def _credential(
    fake: InProcessOAuth, cid: uuid.UUID, **options: object
) -> tokens.ConnectionCredential:
    return tokens.credential_for(cid, oauth_factory=fake.factory, **options)  # type: ignore[arg-type]


def _works(fake: InProcessOAuth, cred: tokens.ConnectionCredential) -> bool:
    return fake.pagerduty.reader_factory(cred.api_base_url, cred.credential).me() is not None


def test_a_valid_token_is_used_without_a_refresh(session: Session, fake: InProcessOAuth) -> None:
    cid = _connected(session, fake)
    before = fake.requests()
    cred = _credential(fake, cid)
    assert cred.credential.secret == _stored(session, cid).access_token
    assert _works(fake, cred)
    assert fake.requests() == before


def test_an_expired_token_is_refreshed_and_the_rotated_refresh_token_stored(
    session: Session, fake: InProcessOAuth
) -> None:
    cid = _connected(session, fake)
    old = _stored(session, cid)
    old_access, old_refresh = old.access_token, old.refresh_token
    assert old_refresh is not None
    _expire(session, cid)

    cred = _credential(fake, cid)

    assert cred.credential.secret != old_access
    assert _works(fake, cred)
    stored = _stored(session, cid)
    assert (stored.status, stored.access_token) == ("connected", cred.credential.secret)
    assert stored.refresh_token not in (None, old_refresh)
    assert stored.access_token_expires_at is not None
    assert stored.access_token_expires_at > utcnow() + timedelta(minutes=30)
    # The used refresh token died at PagerDuty: only the stored one can refresh again.
    with pytest.raises(InvalidGrant):
        fake.factory(*fake.app()).refresh(old_refresh)
    _expire(session, cid)
    assert _works(fake, _credential(fake, cid))


def test_a_401_forces_one_refresh_that_other_callers_reuse(
    session: Session, fake: InProcessOAuth
) -> None:
    cid = _connected(session, fake)
    first = _credential(fake, cid)
    before = fake.requests()
    fresh = _credential(fake, cid, rejected=first.credential)
    again = _credential(fake, cid, rejected=first.credential)
    assert fresh.credential.secret == again.credential.secret != first.credential.secret
    assert fake.requests() - before == 1


@pytest.mark.parametrize("told", ["revoke", "refuse_client"])
def test_a_refused_refresh_asks_the_admin_to_log_in_again(
    session: Session, fake: InProcessOAuth, told: str
) -> None:
    cid = _connected(session, fake)
    getattr(fake, told)()
    _expire(session, cid)

    with pytest.raises(tokens.NeedsReauth):
        _credential(fake, cid)

    stored = _stored(session, cid)
    assert (stored.status, stored.last_error) == ("needs_reauth", messages.REAUTH)
    assert "Log in with OAuth 2.0 again" in messages.REAUTH
    before = fake.requests()
    with pytest.raises(tokens.ConnectionUnavailable):  # and nobody tries PagerDuty again
        _credential(fake, cid)
    assert fake.requests() == before


@pytest.mark.parametrize(
    ("told", "status", "error"),
    [("fail", 503, Transient), ("fail", 429, RateLimited), ("time_out", None, Transient)],
)
def test_a_token_endpoint_that_does_not_answer_keeps_the_refresh_token(
    session: Session, fake: InProcessOAuth, told: str, status: int | None, error: type[Exception]
) -> None:
    cid = _connected(session, fake)
    kept = stored_ciphertext(session, _stored(session, cid), "refresh_token")
    _expire(session, cid)
    if told == "fail":
        fake.fail(status=status or 503)
    else:
        fake.time_out()

    with pytest.raises(error):  # the task tries again later
        _credential(fake, cid)

    stored = _stored(session, cid)
    assert (stored.status, stored.last_error) == ("connected", None)
    assert stored_ciphertext(session, stored, "refresh_token") == kept
    fake.heal()
    assert _works(fake, _credential(fake, cid))


def test_a_connection_without_a_refresh_token_asks_for_a_login_without_calling_pagerduty(
    session: Session, fake: InProcessOAuth
) -> None:
    cid = _connected(session, fake)
    _stored(session, cid).refresh_token = None
    session.commit()
    _expire(session, cid)
    before = fake.requests()

    with pytest.raises(tokens.NeedsReauth):
        _credential(fake, cid)

    stored = _stored(session, cid)
    assert (stored.status, stored.last_error) == ("needs_reauth", messages.REAUTH)
    assert fake.requests() == before

"""An OAuth login's worker half (workers/connections/oauth_exchange.py) against the in-process
PagerDuty identity host (tests/support/fake_oauth.py): the real exchange, id_token check and
connect run in this thread. What the admin sees is the connection's status and its words; what
is kept is the tokens (encrypted) and the account, and the login's secrets are gone either way.

The task's own retries and redelivery stay in tests/integration/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from models import OAuthAuthorization, PagerDutyConnection
from tests.support.connections import pending_oauth_login, stored_connection
from tests.support.fake_oauth import JWKS_PATH, Defect, InProcessOAuth, in_process_oauth
from tests.support.fake_pagerduty import BASE_URL
from tests.support.outbox import CommittedTasks, as_flat, paused_outbox
from tests.support.secrets import stored_ciphertext
from workers.connections import messages, oauth_exchange
from workers.connections.activation import ActivationResult
from workers.pagerduty.oauth import DEFAULT_SCOPES

pytestmark = pytest.mark.both_databases


@pytest.fixture
def fake(db: str) -> Iterator[InProcessOAuth]:
    with in_process_oauth() as identity:
        yield identity


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    """Tasks committed to the outbox (what will be published); no relay publishes them."""
    with paused_outbox():
        yield CommittedTasks(as_flat)


def _login(
    session: Session, fake: InProcessOAuth, app: str = "demo-oauth"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A connection waiting on its login, whose code PagerDuty just sent to our callback."""
    conn, auth = pending_oauth_login(session, fake.pagerduty, app, browser=fake.http)
    return conn.id, auth.id


def _exchange(fake: InProcessOAuth, aid: uuid.UUID) -> ActivationResult:
    return oauth_exchange.exchange_oauth_code(
        aid, client_factory=fake.pagerduty.reader_factory, oauth_factory=fake.factory
    )


def _stored(session: Session, cid: uuid.UUID) -> PagerDutyConnection:
    session.expire_all()
    return stored_connection(session, cid)


def test_a_granted_login_connects_the_account_and_asks_for_the_first_sync(
    session: Session, fake: InProcessOAuth, published: CommittedTasks
) -> None:
    cid, aid = _login(session, fake)

    assert _exchange(fake, aid).outcome == "connected"

    conn = _stored(session, cid)
    assert (conn.status, conn.auth_method, conn.region) == ("connected", "oauth", "us")
    assert (conn.pagerduty_account_id, conn.pagerduty_subdomain) == ("acme", "acme")
    assert conn.granted_scopes == " ".join(sorted(DEFAULT_SCOPES))
    assert conn.last_error is None
    for secret in ("access_token", "refresh_token", "oauth_client_secret"):
        assert (stored_ciphertext(session, conn, secret) or "").startswith("v1:")
    # The login (its code, verifier and client secret) is gone with its outcome.
    assert session.get(OAuthAuthorization, aid) is None
    assert [(m["name"], m["kind"]) for m in published] == [("pagerduty.sync_connection", "initial")]
    assert fake.requests() == 1


def test_an_eu_login_connects_to_the_eu_host(
    session: Session, fake: InProcessOAuth, published: CommittedTasks
) -> None:
    cid, aid = _login(session, fake, "euco-oauth")
    assert _exchange(fake, aid).outcome == "connected"
    conn = _stored(session, cid)
    assert (conn.status, conn.region, conn.pagerduty_account_id) == ("connected", "eu", "euco")
    # The admin's role was read from the EU host, where the account lives.
    assert [c.base_url for c in fake.pagerduty.clients] == [f"{BASE_URL}/eu"]


def _refused(
    session: Session, fake: InProcessOAuth, cid: uuid.UUID, aid: uuid.UUID, words: str
) -> None:
    """The admin reads ``words`` on an ``invalid`` connection; no token was kept anywhere."""
    assert _exchange(fake, aid).outcome == "invalid"
    conn = _stored(session, cid)
    assert (conn.status, conn.last_error) == ("invalid", words)
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert session.get(OAuthAuthorization, aid) is None


@pytest.mark.parametrize(
    ("told", "words"),
    [
        ("refuse_codes", messages.CODE_REFUSED),
        ("refuse_client", messages.CLIENT_REFUSED),
        ("fail", messages.UNREACHABLE),
        ("time_out", messages.UNREACHABLE),
    ],
)
def test_a_code_that_brings_no_tokens_ends_the_login_in_plain_words(
    session: Session, fake: InProcessOAuth, published: CommittedTasks, told: str, words: str
) -> None:
    cid, aid = _login(session, fake)
    getattr(fake, told)()
    _refused(session, fake, cid, aid, words)
    assert list(published) == []


def test_a_login_without_the_scopes_the_sync_needs_names_them(
    session: Session, fake: InProcessOAuth, published: CommittedTasks
) -> None:
    cid, aid = _login(session, fake)
    fake.omit_scopes = frozenset({"schedules.read"})
    granted = frozenset(DEFAULT_SCOPES) - {"schedules.read"}
    words = messages.missing_scopes(granted, DEFAULT_SCOPES)
    assert "(missing: schedules.read)" in words
    _refused(session, fake, cid, aid, words)


@pytest.mark.parametrize(
    "defect",
    [
        "bad_signature",
        "unknown_kid",
        "wrong_issuer",
        "wrong_audience",
        "expired",
        "no_account",
        "unknown_region",
        "missing",
    ],
)
def test_a_login_whose_id_token_fails_verification_is_not_connected(
    session: Session, fake: InProcessOAuth, published: CommittedTasks, defect: Defect
) -> None:
    cid, aid = _login(session, fake)
    fake.defect = defect
    _refused(session, fake, cid, aid, messages.LOGIN_UNVERIFIED)
    assert _stored(session, cid).pagerduty_account_id is None
    assert list(published) == []


def _check_pending(
    session: Session, fake: InProcessOAuth, fault: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A login whose tokens PagerDuty issued, while its signing keys do not come (``fault``)."""
    cid, aid = _login(session, fake)
    getattr(fake, fault)(JWKS_PATH)
    with pytest.raises(oauth_exchange.VerificationPending):
        _exchange(fake, aid)
    return cid, aid


def test_signing_keys_that_do_not_come_keep_the_tokens_until_the_check_resumes(
    session: Session, fake: InProcessOAuth, published: CommittedTasks
) -> None:
    cid, aid = _check_pending(session, fake, "fail")

    session.expire_all()
    kept = session.get(OAuthAuthorization, aid)
    assert kept is not None
    assert kept.code is None  # the code is spent, its tokens kept
    assert (stored_ciphertext(session, kept, "issued_tokens") or "").startswith("v1:")
    assert _stored(session, cid).status == "validating"

    fake.heal()
    assert _exchange(fake, aid).outcome == "connected"
    assert fake.requests() == 1  # the code was exchanged once, its tokens reused
    assert _stored(session, cid).pagerduty_account_id == "acme"


def test_giving_up_on_a_pending_check_ends_invalid_and_deletes_the_kept_tokens(
    session: Session, fake: InProcessOAuth, published: CommittedTasks
) -> None:
    cid, aid = _check_pending(session, fake, "time_out")

    assert oauth_exchange.give_up_login(aid).outcome == "invalid"

    conn = _stored(session, cid)
    assert (conn.status, conn.last_error) == ("invalid", messages.UNREACHABLE)
    assert conn.access_token is None
    assert session.get(OAuthAuthorization, aid) is None
    assert list(published) == []

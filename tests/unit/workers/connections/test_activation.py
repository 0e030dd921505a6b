"""Checking an API key (workers/connections/activation.py) against the in-process PagerDuty.

The real activation, client and simulator code runs in this thread (tests/support/
fake_pagerduty.py): no worker process, no socket. What only a worker can prove (the message
path, the task's own retries, redelivery after a crash) stays in tests/integration/tasks/.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuthMethod, OAuthAuthorization, PagerDutyConnection, utcnow
from tests.support.connections import validating_key_connection
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.locks import waiting_on_a_lock
from tests.support.outbox import CommittedTasks, as_flat, paused_outbox
from workers.connections import activation
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.pagerduty.errors import Transient

pytestmark = pytest.mark.postgres_only

WRONG_KEY = "u+thisKeyDoesNotExist1"


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    """Tasks committed to the outbox (what will be published); no relay publishes them."""
    with paused_outbox():
        yield CommittedTasks(as_flat)


def _validate(
    session: Session, fake: InProcessPagerDuty, key: str, region: str = "us"
) -> tuple[activation.ActivationResult, PagerDutyConnection]:
    conn = validating_key_connection(session, key, region=region)
    result = activation.validate_api_key(
        conn.id, conn.generation, client_factory=fake.reader_factory
    )
    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert stored is not None
    return result, stored


def _hosts(fake: InProcessPagerDuty) -> set[str]:
    return {"eu" if c.base_url.rstrip("/").endswith("/eu") else "us" for c in fake.clients}


def test_a_valid_account_key_connects_and_asks_for_the_first_sync(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    result, conn = _validate(session, fake, fake.api_key())

    assert result.outcome == "connected", result
    assert conn.status == "connected"
    assert conn.key_level == "account"
    assert conn.pagerduty_subdomain == "acme"
    assert conn.last_error is None
    assert conn.notice is None
    assert [m["name"] for m in published] == ["pagerduty.sync_connection"]
    assert published[0]["kind"] == "initial"


def test_a_user_level_key_is_recorded_as_such(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    _, conn = _validate(session, fake, fake.api_key("demo-alice-user"))

    assert conn.status == "connected"
    assert conn.key_level == "user"


def test_a_rejected_key_is_invalid_in_plain_words_after_both_regions(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    result, conn = _validate(session, fake, WRONG_KEY)

    assert result.outcome == "invalid"
    assert conn.status == "invalid"
    assert conn.last_error.startswith("PagerDuty rejected this API key")
    assert "in both regions (US and EU)" in conn.last_error
    assert result.message == conn.last_error
    assert _hosts(fake) == {"us", "eu"}  # 401 in the US, so the EU host was asked too
    assert list(published) == []  # nothing to sync


def test_an_account_without_api_access_is_invalid(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    """PagerDuty answers 402 to the probe when the plan has no REST API access."""
    result, conn = _validate(session, fake, fake.api_key("noapi-readonly"))

    assert result.outcome == "invalid"
    assert conn.status == "invalid"
    assert "does not include REST API access" in conn.last_error
    assert _hosts(fake) == {"us"}  # a 402 is an answer about the account: no region fallback
    assert list(published) == []


def test_a_forbidden_probe_is_invalid_naming_the_permission(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    fake.control.post(
        "/faults", json={"kind": "error", "path_prefix": "/users", "status": 403}
    ).raise_for_status()

    result, conn = _validate(session, fake, fake.api_key())

    assert result.outcome == "invalid"
    assert conn.status == "invalid"
    assert "lacks permission to read users and schedules" in conn.last_error
    assert list(published) == []


def test_a_restricted_user_key_connects_and_says_it_sees_only_part_of_the_account(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    """PagerDuty filters what a Restricted Access user sees rather than answering 403: the key
    works, and the admin is told it sees only what that user can see."""
    user = fake.control.post(
        "/accounts/acme/users",
        json={
            "name": "Riley Restricted",
            "email": "riley@example.com",
            "role": "restricted_access",
        },
    )
    user.raise_for_status()
    key = "u+restrictedUserKey0001"
    fake.control.post(
        "/api_keys",
        json={
            "label": "restricted",
            "key": key,
            "account": "acme",
            "kind": "user",
            "user_id": user.json()["id"],
        },
    ).raise_for_status()

    _, conn = _validate(session, fake, key)

    assert conn.status == "connected"
    assert conn.key_level == "user"
    assert "Riley Restricted" in conn.notice
    assert "(restricted_access)" in conn.notice
    assert "only what that user can see" in conn.notice


def test_an_admin_user_key_gets_no_role_notice(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    _, conn = _validate(session, fake, fake.api_key("demo-alice-user"))

    assert conn.notice is None  # Alice is an admin: she sees everything


def test_an_eu_key_connects_on_the_eu_host(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    _, conn = _validate(session, fake, fake.api_key("euco-readonly"), region="eu")

    assert conn.status == "connected"
    assert conn.region == "eu"
    assert conn.pagerduty_subdomain == "euco"
    assert conn.notice is None
    assert _hosts(fake) == {"eu"}


def test_an_eu_key_chosen_as_us_is_tried_in_the_eu_and_connects_there_saying_so(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    """An API key cannot tell its region and the other host answers 401: before calling the
    key invalid, the other region is tried, and the admin reads which one worked."""
    _, conn = _validate(session, fake, fake.api_key("euco-readonly"), region="us")

    assert conn.status == "connected"
    assert conn.region == "eu"
    assert conn.pagerduty_subdomain == "euco"
    assert "EU region" in conn.notice
    assert "api.eu.pagerduty.com" in conn.notice
    assert conn.last_error is None


def test_a_us_key_chosen_as_eu_connects_in_the_us(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    _, conn = _validate(session, fake, fake.api_key(), region="eu")

    assert conn.status == "connected"
    assert conn.region == "us"
    assert "US region" in conn.notice


def test_a_transient_error_is_raised_for_a_retry_that_then_connects(
    session: Session, fake: InProcessPagerDuty, published: CommittedTasks
) -> None:
    """A 503 is not an answer about the key: the connection stays ``validating`` and the task
    retries (Celery's retry is proven with a worker in tests/integration/tasks)."""
    fake.control.post(
        "/faults", json={"kind": "error", "path_prefix": "/users", "status": 503, "times": 1}
    ).raise_for_status()
    conn = validating_key_connection(session, fake.api_key())

    with pytest.raises(Transient):
        activation.validate_api_key(conn.id, conn.generation, client_factory=fake.reader_factory)
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "validating"
    assert list(published) == []

    retried = activation.validate_api_key(
        conn.id, conn.generation, client_factory=fake.reader_factory
    )
    assert retried.outcome == "connected"
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "connected"


def test_a_stale_validation_writes_nothing(session: Session, fake: InProcessPagerDuty) -> None:
    """A key replaced while the check ran: the old check's result is dropped."""
    conn = validating_key_connection(session, fake.api_key())
    conn.generation += 1
    session.commit()

    result = activation.validate_api_key(
        conn.id, conn.generation - 1, client_factory=fake.reader_factory
    )

    assert result.outcome == "stale"
    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "validating"
    assert fake.clients == []  # PagerDuty was not even asked


def test_giving_up_leaves_a_clear_error(session: Session, fake: InProcessPagerDuty) -> None:
    conn = validating_key_connection(session, fake.api_key())

    activation.give_up(conn.id, conn.generation)

    session.expire_all()
    stored = session.get(PagerDutyConnection, conn.id)
    assert stored.status == "invalid"
    assert "could not reach PagerDuty" in stored.last_error


def test_an_outcome_takes_the_connection_lock_before_its_logins_no_deadlock(
    session: Session,
) -> None:
    """An exchange delivery locks the connection, then its login; a second delivery recording
    its outcome must take them in the same order, or the two deadlock (seen when the deadlines
    loop drove an exchange that a redelivery was also finishing)."""
    conn = validating_key_connection(session, "u+anyKeyWillDo1234")
    conn.auth_method = AuthMethod.OAUTH
    conn.api_key = None
    now = utcnow()
    login = OAuthAuthorization(
        id=uuid.uuid4(),
        workspace_id=conn.workspace_id,
        state_hash=uuid.uuid4().hex,
        code_verifier="v" * 43,
        client_id="client",
        client_secret="secret",
        region="us",
        created_at=now,
        expires_at=now + timedelta(minutes=10),
        connection_id=conn.id,
    )
    session.add(login)
    session.commit()
    cid, generation, aid = conn.id, conn.generation, login.id
    holding, failures = threading.Event(), []

    def other_delivery() -> None:
        try:
            with transaction() as other:
                lock_connection(other, cid)
                holding.set()
                assert waiting_on_a_lock(timeout=10)  # the outcome below queues behind this one
                other.execute(
                    select(OAuthAuthorization).where(OAuthAuthorization.id == aid).with_for_update()
                ).all()
        except Exception as exc:  # reported to the test thread
            failures.append(exc)

    thread = threading.Thread(target=other_delivery)
    thread.start()
    assert holding.wait(10)
    result = activation.finish_connected(cid, generation, kind="initial", authorization_id=aid)
    thread.join(10)
    assert failures == []
    assert result.outcome == "connected"
    session.expire_all()
    assert session.get(PagerDutyConnection, cid).status == "connected"  # type: ignore[union-attr]
    assert session.get(OAuthAuthorization, aid) is None  # its secrets went with the outcome

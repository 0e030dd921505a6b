"""The fixtures every test may use: the migrated database, table emptying, a session, Redis.

Registered as a plugin from tests/conftest.py (after tests.support.env set the environment)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.support.env import TEST_DB_NAME, TEST_ENV, admin_execute


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created and migrated with Alembic for this test process, dropped after."""
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade

    admin_execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}"')
    admin_execute(f'CREATE DATABASE "{TEST_DB_NAME}"')
    url = TEST_ENV["RRPD_DATABASE_URL"]
    upgrade(url)
    yield url
    dispose_engines()
    admin_execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """Isolation for tests that commit (real workers see only committed rows): every table is
    emptied after the test."""
    yield database_url

    from models import Base
    from workers.core.db import get_engine

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    # The session's live workers may still be finishing a task this test sent (a retry, a
    # follow-up sync) while the tables are emptied: PostgreSQL then breaks the lock cycle by
    # failing one side. The TRUNCATE is all or nothing, so trying it again is safe.
    for attempt in range(10):
        try:
            with get_engine(database_url).begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} CASCADE"))
            return
        except OperationalError:
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def session(db: str) -> Iterator[Session]:
    """A session for arranging and checking data; commit to make rows visible to workers."""
    from workers.core.db import session_factory

    with session_factory(db)() as s:
        yield s


@pytest.fixture
def redis_client() -> Iterator[object]:
    import redis

    from workers.core.redis import reset as reset_shared_redis

    client = redis.Redis.from_url(TEST_ENV["RRPD_BROKER_URL"])
    yield client
    prefix = TEST_ENV["RRPD_REDIS_KEY_PREFIX"]
    for key in client.scan_iter(f"{prefix}:lock:*"):
        client.delete(key)
    for key in client.scan_iter(f"{prefix}:flag:*"):
        client.delete(key)
    reset_shared_redis()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        import redis

        client = redis.Redis.from_url(TEST_ENV["RRPD_BROKER_URL"])
        for db_url in (TEST_ENV["RRPD_BROKER_URL"], TEST_ENV["RRPD_RESULT_BACKEND"]):
            c = redis.Redis.from_url(db_url)
            for key in c.scan_iter(f"{TEST_ENV['RRPD_REDIS_KEY_PREFIX']}*"):
                c.delete(key)
        client.close()
    except Exception:  # noqa: S110 - cleanup is best effort
        pass

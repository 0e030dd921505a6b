"""The fixtures every test may use: the migrated database, table emptying, a session, Redis.

Registered as a plugin from tests/conftest.py (after tests.support.env set the environment)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.support.env import SQLITE_PATH, TEST_DATABASE, TEST_DB_NAME, TEST_ENV, admin_execute


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The SQLite lane runs only what is marked ``both_databases`` (and not ``postgres_only``):
    the rest proves PostgreSQL's row locks and concurrency, or needs its server."""
    if TEST_DATABASE != "sqlite":
        return
    kept, dropped = [], []
    for item in items:
        both = item.get_closest_marker("both_databases") is not None
        (kept if both and not item.get_closest_marker("postgres_only") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created and migrated with Alembic for this test process, dropped after."""
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade

    if TEST_DATABASE == "sqlite":
        SQLITE_PATH.unlink(missing_ok=True)
        url = TEST_ENV["RRPD_DATABASE_URL"]
        upgrade(url)
        yield url
        dispose_engines()
        SQLITE_PATH.unlink(missing_ok=True)
        return
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

    if TEST_DATABASE == "sqlite":
        with get_engine(database_url).begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        return
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

    if TEST_DATABASE != "sqlite":
        with session_factory(db)() as s:
            yield s
        return
    # On SQLite our units of work take the write lock when they begin (workers/core/db.py); the
    # test's own session must not hold it while the code under test, in this thread, waits for
    # it. sqlite3's own transaction handling does that: reads outside a transaction, the lock
    # taken at the first write and kept until the commit.
    from workers.core import crypto

    crypto.install()  # as make_engine does: this engine is built here
    engine = create_engine(db, connect_args={"timeout": 30})
    try:
        with Session(engine, expire_on_commit=False) as s:
            yield s
    finally:
        engine.dispose()


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

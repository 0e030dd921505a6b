"""Test set-up: a fresh PostgreSQL database per test process, a Redis key prefix per run.

The environment is configured here, before any project module reads its settings, so every
module-level object (Celery's config, engines) points at the test services.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

RUN_ID = uuid.uuid4().hex[:8]
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
PG_ADMIN_URL = os.environ.get(
    "RRPD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RRPD_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_DB_NAME = f"rrpd_test_{RUN_ID}_{XDIST_WORKER}"
TEST_VAR_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"rrpd-test-{RUN_ID}-{XDIST_WORKER}"


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every process of a run (API, workers) must agree on the public URL: it is the OAuth
# redirect URI, which PagerDuty compares exactly at the code exchange.
API_PORT = _free_port()

TEST_ENV = {
    "RRPD_PUBLIC_URL": f"http://127.0.0.1:{API_PORT}",
    "RRPD_ENV": "test",
    "RRPD_DATABASE_URL": _pg_url(TEST_DB_NAME),
    "RRPD_BROKER_URL": f"{REDIS_URL}/0",
    "RRPD_RESULT_BACKEND": f"{REDIS_URL}/1",
    "RRPD_REDBEAT_URL": f"{REDIS_URL}/0",
    "RRPD_REDIS_KEY_PREFIX": f"rrpdtest-{RUN_ID}-{XDIST_WORKER}",
    "RRPD_ENCRYPTION_KEYS": f"test1={Fernet.generate_key().decode()}",
    "RRPD_API_JWT_SECRET": f"test-jwt-secret-{uuid.uuid4().hex}",
    "RRPD_VAR_DIR": str(TEST_VAR_DIR),
    "RRPD_LOG_FORMAT": "json",
}
os.environ.update(TEST_ENV)
TEST_VAR_DIR.mkdir(parents=True, exist_ok=True)

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from workers.core.settings import reset_settings_cache  # noqa: E402

reset_settings_cache()

pytest_plugins = ["tests.support.stack"]


def _admin_execute(sql: str) -> None:
    engine = create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created and migrated with Alembic for this test process, dropped after."""
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade

    _admin_execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}"')
    _admin_execute(f'CREATE DATABASE "{TEST_DB_NAME}"')
    url = TEST_ENV["RRPD_DATABASE_URL"]
    upgrade(url)
    yield url
    dispose_engines()
    _admin_execute(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}" WITH (FORCE)')


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

"""The test environment: a fresh PostgreSQL database per test process, a Redis key prefix per run.

Imported by tests/conftest.py before any project module reads its settings, so every
module-level object (Celery's config, engines) points at the test services.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from cryptography.fernet import Fernet

RUN_ID = uuid.uuid4().hex[:8]
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
PG_ADMIN_URL = os.environ.get(
    "RRPD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RRPD_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_DB_NAME = f"rrpd_test_{RUN_ID}_{XDIST_WORKER}"
TEST_VAR_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"rrpd-test-{RUN_ID}-{XDIST_WORKER}"


def pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every process of a run (API, workers) must agree on the public URL: it is the OAuth
# redirect URI, which PagerDuty compares exactly at the code exchange.
API_PORT = free_port()

TEST_ENV = {
    "RRPD_PUBLIC_URL": f"http://127.0.0.1:{API_PORT}",
    "RRPD_ENV": "test",
    "RRPD_DATABASE_URL": pg_url(TEST_DB_NAME),
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


def admin_execute(sql: str) -> None:
    engine = create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()

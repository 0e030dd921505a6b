"""The test environment: a fresh PostgreSQL database per test process, a Redis key prefix per run.

Imported by tests/conftest.py before any project module reads its settings, so every
module-level object (Celery's config, engines) points at the test services.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
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

# The one clock (models/clock.py), pinned for the whole run and every process it starts: no
# test depends on the hour CI happens to run. RRPD_TEST_CLOCK is an ISO instant ("Z" for UTC),
# or "off" for the system clock; the default is a fixed morning. `make test` also runs the
# time-sensitive tests pinned at other times of day and across midnight (scripts/clock-lane.sh).
DEFAULT_TEST_CLOCK = "2026-12-07T09:00:00Z"
TEST_CLOCK = os.environ.get("RRPD_TEST_CLOCK", "").strip() or DEFAULT_TEST_CLOCK


def _clock_offset(pin: str) -> str | None:
    if pin.lower() == "off":
        return None
    instant = datetime.fromisoformat(pin.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return repr((instant - datetime.now(UTC)).total_seconds())


# The database lane: PostgreSQL (production's, and where concurrency is proven) by default;
# RRPD_TEST_DATABASE=sqlite runs the tests marked `both_databases` on a SQLite file, the local
# run's embedded default (`make test` runs that lane too).
TEST_DATABASE = os.environ.get("RRPD_TEST_DATABASE", "").strip().lower() or "postgresql"
if TEST_DATABASE not in ("postgresql", "sqlite"):
    raise RuntimeError(f"RRPD_TEST_DATABASE must be postgresql or sqlite, not {TEST_DATABASE!r}")
SQLITE_PATH = TEST_VAR_DIR / "rrpd.sqlite3"

TEST_ENV = {
    "RRPD_PUBLIC_URL": f"http://127.0.0.1:{API_PORT}",
    "RRPD_ENV": "test",
    "RRPD_DATABASE_URL": (
        f"sqlite:///{SQLITE_PATH}" if TEST_DATABASE == "sqlite" else pg_url(TEST_DB_NAME)
    ),
    "RRPD_BROKER_URL": f"{REDIS_URL}/0",
    "RRPD_RESULT_BACKEND": f"{REDIS_URL}/1",
    "RRPD_REDBEAT_URL": f"{REDIS_URL}/0",
    "RRPD_REDIS_KEY_PREFIX": f"rrpdtest-{RUN_ID}-{XDIST_WORKER}",
    "RRPD_ENCRYPTION_KEYS": f"test1={Fernet.generate_key().decode()}",
    "RRPD_API_JWT_SECRET": f"test-jwt-secret-{uuid.uuid4().hex}",
    "RRPD_VAR_DIR": str(TEST_VAR_DIR),
    "RRPD_LOG_FORMAT": "json",
}
CLOCK_OFFSET = _clock_offset(TEST_CLOCK)
if CLOCK_OFFSET is not None:
    TEST_ENV["RRPD_CLOCK_OFFSET_SECONDS"] = CLOCK_OFFSET
else:
    os.environ.pop("RRPD_CLOCK_OFFSET_SECONDS", None)
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

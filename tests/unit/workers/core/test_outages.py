"""What counts as a database outage (workers/core/outages.py), judged on the drivers' real
errors: a connection failure is retried, a conflict is tried again, a SQL error of ours is not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import create_engine, text

from tests.support.db_errors import raised, sqlite_sql_error
from tests.support.env import PG_ADMIN_URL
from tests.support.processes import free_port
from workers.core.outages import (
    is_database_conflict,
    is_database_outage,
    is_transient_database_error,
    outage_behind,
)


def _pg(database: str = "postgres") -> str:
    base = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1).rpartition("/")[0]
    return f"{base}/{database}"


def test_a_sqlite_function_postgresql_alone_has_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    # The local run's fan-out: "no such function: make_interval", an OperationalError by class.
    exc = sqlite_sql_error(tmp_path)
    assert isinstance(exc, sqlalchemy.exc.OperationalError)
    assert not is_database_outage(exc)
    assert not is_transient_database_error(exc)
    assert outage_behind(exc) is None


def test_sqlite_busy_past_its_timeout_is_a_conflict_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        exc = raised(f"sqlite:///{path}", "INSERT INTO t VALUES (1)", timeout=0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(exc)
    assert is_database_conflict(exc)
    assert not is_database_outage(exc)
    assert is_transient_database_error(exc)


def test_postgresql_refusing_connections_is_an_outage() -> None:
    exc = raised(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres",
        "SELECT 1",
        connect_timeout=2,
    )
    assert isinstance(exc, sqlalchemy.exc.OperationalError)
    assert is_database_outage(exc)
    assert outage_behind(exc) == "database"


def test_postgresql_shutting_a_session_down_is_an_outage() -> None:
    engine = create_engine(_pg())
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                other.commit()
            with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
                conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert is_database_outage(caught.value)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT no_such_function()",  # ProgrammingError
        "SELECT 1/0",  # DataError
        # A cancelled statement is an OperationalError to psycopg, and still not an outage.
        "SET statement_timeout = 10; SELECT pg_sleep(1)",
    ],
)
def test_postgresql_statement_errors_are_bugs_not_outages(sql: str) -> None:
    exc = raised(_pg(), sql)
    assert not is_database_outage(exc)
    assert not is_transient_database_error(exc)
    assert outage_behind(exc) is None


def test_a_postgresql_deadlock_is_a_conflict_tried_again() -> None:
    import psycopg.errors

    exc = sqlalchemy.exc.OperationalError("UPDATE ...", {}, psycopg.errors.DeadlockDetected())
    assert is_database_conflict(exc)
    assert not is_database_outage(exc)
    assert is_transient_database_error(exc)


def test_a_pool_with_no_free_connection_is_an_outage() -> None:
    assert is_database_outage(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))

"""Real driver errors for tests of what counts as an outage: raised by SQLite or PostgreSQL
themselves, not built by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import create_engine, text

# A PostgreSQL function SQLite does not have: the local run's fan-out failed on it.
POSTGRES_ONLY_SQL = "SELECT make_interval(0, 0, 0, 0, 0, 0, 5)"


def raised(engine_url: str, sql: str, **connect_args: Any) -> sqlalchemy.exc.SQLAlchemyError:
    """The error ``sql`` raises on a fresh engine for ``engine_url``."""
    engine = create_engine(engine_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql!r} did not fail")


def sqlite_sql_error(
    tmp_path: Path, sql: str = POSTGRES_ONLY_SQL
) -> sqlalchemy.exc.SQLAlchemyError:
    """A SQL error of ours as SQLite reports it (an ``OperationalError`` by class)."""
    return raised(f"sqlite:///{tmp_path / 'errors.sqlite3'}", sql)

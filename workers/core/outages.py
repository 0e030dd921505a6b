"""What counts as a dependency outage: PostgreSQL or Redis not answering, rather than a bug.

One list for every process: the API answers these with 503 and a retry hint
(``api_stub.errors``), beat starts its scheduler again after the Redis ones
(``workers.tasking.supervision``), and tasks retry the database ones with backoff instead of failing
(docs/operations.md, "Outages").

A database outage is a *connection* failure only: the server gone or restarting, the connection
refused, reset or closed, the pool out of connections. Drivers raise some SQL errors with the
same class (sqlite3 raises ``OperationalError`` for "no such function" and for a syntax error;
psycopg for a cancelled statement), so the class alone says nothing: the driver's own error
decides. A SQL error of our own code is a bug: it fails the task at once with its real error
(Flower, logs, metrics), instead of being retried for minutes as if PostgreSQL were away.

A *conflict* (a deadlock or serialization failure broken by PostgreSQL, SQLite's single writer
busy past its timeout) is not an outage either, but the transaction was rolled back as a whole,
so the unit of work is tried again like after an outage (``is_transient_database_error``).
"""

from __future__ import annotations

from typing import Literal

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

# The classes a database outage can arrive as; ``is_database_outage`` then reads the driver's
# error. InterfaceError is a connection that is already closed; SQLAlchemy's TimeoutError is the
# pool waiting for a free connection. A transaction that hit one of them was rolled back as a
# whole (or never began), so the unit of work can be tried again.
DATABASE_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)

# PostgreSQL SQLSTATEs that mean the server, not the statement: class 08 (connection
# exception), admin or crash shutdown, "the database system is starting up", too many clients.
_PG_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# A deadlock or serialization failure: PostgreSQL rolled the transaction back to break it.
_PG_CONFLICT_STATES = frozenset({"40001", "40P01"})
# sqlite3 says "database is locked" when another connection holds the write lock past the busy
# timeout; the file missing or unreadable is SQLite's only kind of outage.
_SQLITE_CONFLICT = ("database is locked", "database table is locked", "database is busy")
_SQLITE_OUTAGE = ("unable to open database file", "disk i/o error")

# Redis down, restarting (LOADING is a BusyLoadingError, a ConnectionError), unreachable, or
# demoted to a read-only replica by a failover; kombu wraps publish failures as its
# OperationalError once its own retries are spent.
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    kombu.exceptions.OperationalError,
)


def _driver_error(exc: sqlalchemy.exc.DBAPIError) -> tuple[str | None, str, bool]:
    """(SQLSTATE or None, the driver's message in lower case, whether it is sqlite3's)."""
    orig = exc.orig
    module = type(orig).__module__
    return getattr(orig, "sqlstate", None), str(orig).lower(), module.startswith("sqlite3")


def is_database_outage(exc: BaseException) -> bool:
    """True for the database not answering: a connection refused, reset or closed, the server
    shutting down or starting up, the pool exhausted. False for any error in a statement."""
    if isinstance(exc, sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sqlalchemy.exc.OperationalError):
        return False
    state, message, sqlite = _driver_error(exc)
    if sqlite:
        return any(m in message for m in _SQLITE_OUTAGE)
    if state is None:
        # psycopg's own connection failures carry no SQLSTATE ("connection refused", "server
        # closed the connection unexpectedly", "consuming input failed").
        return True
    return state.startswith("08") or state in _PG_OUTAGE_STATES


def is_database_conflict(exc: BaseException) -> bool:
    """True for a transaction rolled back to break a deadlock or serialization failure, or
    SQLite's write lock busy past its timeout: the same unit of work may simply run again."""
    if not isinstance(exc, sqlalchemy.exc.OperationalError):
        return False
    state, message, sqlite = _driver_error(exc)
    if sqlite:
        return any(m in message for m in _SQLITE_CONFLICT)
    return state in _PG_CONFLICT_STATES


def is_transient_database_error(exc: BaseException) -> bool:
    """An outage or a conflict: the unit of work rolled back whole and is tried again."""
    return is_database_outage(exc) or is_database_conflict(exc)


def is_redis_outage(exc: BaseException) -> bool:
    return isinstance(exc, REDIS_OUTAGE_ERRORS)


def outage_behind(exc: BaseException) -> Literal["database", "broker"] | None:
    """Which dependency's outage ``exc`` is, or was raised because of.

    Libraries wrap outages in errors of their own: Celery's result consumer gives up on Redis
    with a bare ``RuntimeError("Retry limit exceeded while trying to reconnect to the Celery
    result store backend...")`` raised *from* the ``redis.ConnectionError``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        if is_transient_database_error(current):
            return "database"
        if is_redis_outage(current):
            return "broker"
        current = current.__cause__ or current.__context__
    return None

"""What counts as a dependency outage: PostgreSQL or Redis not answering, rather than a bug.

One list for every process: the API answers these with 503 and a retry hint
(``api_stub.errors``), beat starts its scheduler again after the Redis ones
(``workers.tasking.supervision``), and tasks retry the database ones with backoff instead of failing
(docs/operations.md, "Outages").
"""

from __future__ import annotations

from typing import Literal

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

# PostgreSQL down, restarting, out of connections, or the connection died mid-transaction.
# SQLAlchemy wraps the driver's errors (psycopg.OperationalError for "connection refused",
# "server closed the connection unexpectedly", "the database system is starting up" or "in
# recovery mode"), and InterfaceError for a connection that is already closed; its own
# TimeoutError is the pool waiting for a free connection. A transaction that hit one of them
# was rolled back as a whole (or never began), so the unit of work can be tried again.
DATABASE_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)

# Redis down, restarting (LOADING is a BusyLoadingError, a ConnectionError), unreachable, or
# demoted to a read-only replica by a failover; kombu wraps publish failures as its
# OperationalError once its own retries are spent.
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    kombu.exceptions.OperationalError,
)


def is_database_outage(exc: BaseException) -> bool:
    """True for PostgreSQL not answering; also when a DBAPIError says its connection died."""
    if isinstance(exc, DATABASE_OUTAGE_ERRORS):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


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
        if is_database_outage(current):
            return "database"
        if is_redis_outage(current):
            return "broker"
        current = current.__cause__ or current.__context__
    return None

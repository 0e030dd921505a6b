"""Database engine and sessions: one transaction per unit of work, hooks that run after commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from workers.core import crypto
from workers.core.process import after_fork
from workers.core.settings import get_settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
# One sessionmaker per engine: each ``sessionmaker`` makes a Session subclass of its own, and
# SQLAlchemy then builds that class's event dispatch afresh (about 1 ms of CPU per transaction,
# five transactions per on-call check, bench/profile_check.py).
_makers: dict[Engine, sessionmaker[Session]] = {}
_AFTER_COMMIT = "rrpd_after_commit"
# Execution option: on SQLite, begin without the write lock (a read-only unit; see make_engine).
DEFERRED = "rrpd_sqlite_deferred"


def make_engine(url: str) -> Engine:
    # Every process reaches the database through here (servers, workers, rrpd, Alembic): the
    # models' secret columns get their cipher before any row is read or written.
    crypto.install()
    if url.startswith("sqlite"):
        # The driver in autocommit, BEGIN emitted by us (SQLAlchemy's pysqlite recipe).
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A unit of work takes SQLite's one write lock when it begins, waiting for it up
            # to the busy timeout. sqlite3 on its own began a transaction only at the first
            # write: a unit's reads ran outside it (two fan-out rounds both read a connection
            # as due and both enqueued it), and a write after a read that another writer had
            # overtaken failed at once with "database is locked", no wait (the API answered
            # 503 while the local run's syncs wrote). Read-only snapshots begin deferred: WAL
            # lets them read beside the writer.
            deferred = conn.get_execution_options().get(DEFERRED, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # WAL lets the API read while a worker writes (local run only).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    settings = get_settings()
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().effective_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Drop every engine and its pool (tests, and processes that change the database URL)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()


@after_fork
def _forget_engines_after_fork() -> None:
    # A forked child must never use the parent's pooled connections: drop the pools without
    # closing the parent's sockets (close=False), and take a fresh lock (the parent's may have
    # been held by another thread at the moment of the fork).
    global _lock
    _lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _makers.clear()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    engine = get_engine(url)
    maker = _makers.get(engine)
    if maker is None:
        maker = _makers[engine] = sessionmaker(engine, expire_on_commit=False)
    return maker


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with session_factory(url)() as session, session.begin():
        yield session


@contextmanager
def snapshot(url: str | None = None) -> Iterator[Session]:
    """A read-only unit of work that sees one moment of the database.

    PostgreSQL's default (READ COMMITTED) lets each statement see what committed since the
    previous one, so a page built from several reads can mix states (a sync's run recorded,
    the connection row it updated in the same transaction not yet); REPEATABLE READ reads every
    statement from the transaction's first snapshot. SQLite transactions already do.
    """
    engine = get_engine(url)
    options: dict[str, Any] = (
        {DEFERRED: True}
        if engine.dialect.name == "sqlite"
        else {"isolation_level": "REPEATABLE READ"}
    )
    # Read only: closing the connection ends its transaction without a commit. The session is
    # closed, not rolled back, so what was read stays loaded on the returned objects.
    with (
        engine.connect().execution_options(**options) as conn,
        Session(conn, expire_on_commit=False) as session,
    ):
        yield session


def affected_rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (``Session.execute`` types its answer as a ``Result``)."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def after_commit(session: Session, fn: Callable[[], object]) -> None:
    """Run ``fn`` once the session's transaction has committed; dropped on rollback.

    Nothing is *published* from here: tasks and events are rows of the outbox, written in the
    transaction (``workers.outbox``); this hook only wakes the relay once they are committed.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(fn)


def pending_after_commit(session: Session) -> list[Callable[[], object]]:
    """The callbacks waiting for this session's commit (empty after a commit or rollback)."""
    return list(session.info.get(_AFTER_COMMIT, []))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, [])
    for fn in callbacks:
        fn()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_AFTER_COMMIT, None)

"""Waiting, in a test, until another transaction queues behind a row lock (PostgreSQL)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from workers.core.db import get_engine


def waiting_on_a_lock(timeout: float = 20, engine: Engine | None = None) -> bool:
    """True once some other backend of our database waits on a lock; False after ``timeout``.

    ``engine``: the database to watch, when it is not this process's own (a deployment's)."""
    deadline = time.monotonic() + timeout
    with (engine or get_engine()).connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar()
            conn.rollback()
            if waiting:
                return True
            time.sleep(0.02)
    return False

"""A key check that ends failed leaves the connection in words that name the real cause: our
database, PagerDuty, or an error on our side (never PagerDuty's fault for a bug of ours)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection
from tests.support import factories
from tests.support.db_errors import sqlite_sql_error
from workers.connections import messages
from workers.pagerduty.errors import Transient


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("sql_bug", messages.CHECK_FAILED_HERE),
        ("pool_timeout", messages.DATABASE_UNAVAILABLE),
        ("pagerduty", messages.UNREACHABLE),
    ],
)
def test_a_failed_check_says_what_failed(
    session: Session, tmp_path: Path, error: str, words: str
) -> None:
    from tasks.connections import validate_api_key

    conn = factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.VALIDATING
    )
    session.commit()
    exc = {
        "sql_bug": lambda: sqlite_sql_error(tmp_path),
        "pool_timeout": lambda: sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
        "pagerduty": lambda: Transient("PagerDuty answered 503"),
    }[error]()
    kwargs = {"connection_id": str(conn.id), "generation": conn.generation}
    validate_api_key.on_failure(exc, "task-id", (), kwargs, None)

    session.expire_all()
    ended = session.get(PagerDutyConnection, conn.id)
    assert ended is not None
    assert ended.status == ConnectionStatus.INVALID
    assert ended.last_error == words

"""Model tests run on both databases: PostgreSQL (production) and SQLite (the local run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from workers.core.db import make_engine
from workers.core.migrate import upgrade


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('models')) / 'models.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def session(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Session]:
    """Overrides the suite's PostgreSQL session: each model test runs once per database."""
    if request.param == "postgresql":
        yield request.getfixturevalue("_pg_session")
        return
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()
    # Isolation: every table emptied, as the PostgreSQL fixture does.
    from models import Base

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def _pg_session(db: str) -> Iterator[Session]:
    from workers.core.db import session_factory

    with session_factory(db)() as s:
        yield s

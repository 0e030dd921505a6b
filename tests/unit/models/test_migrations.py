"""Models and migrations agree, on PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import models
from tests.support.env import admin_execute, pg_url
from workers.core.db import make_engine
from workers.core.migrate import downgrade, upgrade


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, models.Base.metadata)
    engine.dispose()
    return diff


@pytest.fixture
def empty_pg() -> str:
    name = f"rrpd_mig_{uuid.uuid4().hex[:8]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    yield pg_url(name)
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


@pytest.mark.parametrize("backend", ["empty_pg", "empty_sqlite"])
def test_upgrade_gives_full_schema_and_matches_models(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(backend)
    upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(models.Base.metadata.tables) <= tables
    assert _diff(url) == []


@pytest.mark.parametrize("backend", ["empty_pg", "empty_sqlite"])
def test_downgrade_to_base_and_back(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    assert _diff(url) == []


def test_partial_unique_index_exists_on_sqlite(empty_sqlite: str) -> None:
    upgrade(empty_sqlite)
    engine = create_engine(empty_sqlite)
    with engine.connect() as conn:
        sql = conn.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE name='uq_pagerduty_connections_live_workspace'"
            )
        ).scalar_one()
    engine.dispose()
    assert "WHERE status <> 'disconnected'" in sql

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


@pytest.mark.parametrize("backend", ["empty_pg", "empty_sqlite"])
def test_0018_starts_the_on_call_history_from_who_is_on_duty(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Migration 0018 opens an interval per on-duty member (from ``since``) and per PagerDuty
    user on call for a bound rotation whom no member matches."""
    import sqlalchemy as sa

    from models.base import UTCDateTime
    from models.clock import utcnow

    url = request.getfixturevalue(backend)
    upgrade(url, "0017")
    when = UTCDateTime(timezone=True)
    ids = {k: uuid.uuid4() for k in ("ws", "ann", "rot", "conn")}
    since = utcnow().replace(microsecond=0)

    def table(table_name: str, /, **cols: sa.types.TypeEngine[object]) -> sa.TableClause:
        return sa.table(table_name, *(sa.column(c, t) for c, t in cols.items()))

    u, s = sa.Uuid(), sa.String()
    rows: list[tuple[sa.TableClause, dict[str, object]]] = [
        (table("workspaces", id=u, name=s), {"id": ids["ws"], "name": "Acme"}),
        (
            table("members", id=u, workspace_id=u, email=s, email_key=s, display_name=s, role=s),
            {
                "id": ids["ann"],
                "workspace_id": ids["ws"],
                "email": "ann@acme.test",
                "email_key": "ann@acme.test",
                "display_name": "Ann",
                "role": "member",
            },
        ),
        (
            table("rotations", id=u, workspace_id=u, name=s, mode=s, pagerduty_schedule_id=s),
            {
                "id": ids["rot"],
                "workspace_id": ids["ws"],
                "name": "Primary",
                "mode": "pagerduty",
                "pagerduty_schedule_id": "PS1",
            },
        ),
        (
            table("rotation_on_duty", rotation_id=u, member_id=u, since=when),
            {"rotation_id": ids["rot"], "member_id": ids["ann"], "since": since},
        ),
        (
            table(
                "pagerduty_connections",
                id=u,
                workspace_id=u,
                auth_method=s,
                region=s,
                status=s,
                generation=sa.Integer(),
                status_changed_at=when,
                consecutive_sync_failures=sa.Integer(),
            ),
            {
                "id": ids["conn"],
                "workspace_id": ids["ws"],
                "auth_method": "api_key",
                "region": "us",
                "status": "connected",
                "generation": 1,
                "status_changed_at": since,
                "consecutive_sync_failures": 0,
            },
        ),
        (
            table(
                "pagerduty_users",
                id=u,
                connection_id=u,
                pagerduty_id=s,
                name=s,
                synced_at=when,
                active=sa.Boolean(),
            ),
            {
                "id": uuid.uuid4(),
                "connection_id": ids["conn"],
                "pagerduty_id": "PUSTRAN",
                "name": "Stranger",
                "synced_at": since,
                "active": True,
            },
        ),
        (
            table(
                "pagerduty_oncalls",
                connection_id=u,
                schedule_pagerduty_id=s,
                user_pagerduty_id=s,
                starts_at=when,
            ),
            {
                "connection_id": ids["conn"],
                "schedule_pagerduty_id": "PS1",
                "user_pagerduty_id": "PUSTRAN",
                "starts_at": since,
            },
        ),
    ]
    engine = make_engine(url)
    with engine.begin() as conn:
        for t, row in rows:
            conn.execute(sa.insert(t).values(**row))
    engine.dispose()

    upgrade(url)

    engine = make_engine(url)
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(models.OnDutyInterval).order_by(models.OnDutyInterval.name)
        ).all()
    engine.dispose()
    assert [(r.name, r.member_id, r.pagerduty_user_id, r.ended_at, r.source) for r in got] == [
        ("Ann", ids["ann"], None, None, "backfill"),
        ("Stranger", None, "PUSTRAN", None, "backfill"),
    ]
    assert {r.started_at for r in got} == {since}


@pytest.mark.parametrize("backend", ["empty_pg", "empty_sqlite"])
def test_0019_gives_every_bound_rotation_its_one_schedule_as_the_first(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Migration 0019: a ``rotation_schedules`` row (position 0) per bound rotation, none for a
    Manual one; a planned handoff per rotation, schedule and instant from then on."""
    import sqlalchemy as sa

    url = request.getfixturevalue(backend)
    upgrade(url, "0018")
    ws, bound, manual = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    u, s = sa.Uuid(), sa.String()
    workspaces = sa.table("workspaces", sa.column("id", u), sa.column("name", s))
    rotations = sa.table(
        "rotations",
        *(sa.column(c, u) for c in ("id", "workspace_id")),
        *(sa.column(c, s) for c in ("name", "mode", "pagerduty_schedule_id")),
    )
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(workspaces).values(id=ws, name="Acme"))
        conn.execute(
            sa.insert(rotations),
            [
                {
                    "id": bound,
                    "workspace_id": ws,
                    "name": "Primary",
                    "mode": "pagerduty",
                    "pagerduty_schedule_id": "PS1",
                },
                {
                    "id": manual,
                    "workspace_id": ws,
                    "name": "By hand",
                    "mode": "manual",
                    "pagerduty_schedule_id": None,
                },
            ],
        )
    engine.dispose()

    upgrade(url)

    engine = make_engine(url)
    with engine.connect() as conn:
        got = conn.execute(sa.select(models.RotationSchedule)).all()
        uniques = inspect(conn).get_unique_constraints("scheduled_handoffs")
    engine.dispose()
    assert [(r.rotation_id, r.schedule_pagerduty_id, r.position) for r in got] == [
        (bound, "PS1", 0)
    ]
    assert [c["column_names"] for c in uniques] == [["rotation_id", "schedule_id", "at"]]

    downgrade(url, "0018")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "rotation_schedules" not in inspect(conn).get_table_names()
        uniques = inspect(conn).get_unique_constraints("scheduled_handoffs")
    engine.dispose()
    assert [c["column_names"] for c in uniques] == [["rotation_id", "at"]]

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import Workspace
from workers.core.db import after_commit, transaction


def test_after_commit_runs_only_once_committed(db: str) -> None:
    seen: list[str] = []
    with transaction() as session:
        ws = Workspace(name="Acme")
        session.add(ws)
        after_commit(session, lambda: seen.append("published"))
        session.flush()
        assert seen == [], "must not publish before the commit"
    assert seen == ["published"]


def test_after_commit_is_dropped_on_rollback(db: str) -> None:
    seen: list[str] = []

    def doomed() -> None:
        with transaction() as session:
            session.add(Workspace(name="Doomed"))
            after_commit(session, lambda: seen.append("published"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        doomed()
    assert seen == []
    with transaction() as session:
        assert session.scalars(select(Workspace).where(Workspace.name == "Doomed")).first() is None
    # A later, unrelated commit must not run the dropped callback either.
    with transaction() as session:
        session.add(Workspace(name="Later"))
    assert seen == []


def test_a_snapshot_reads_one_moment_of_the_database(db: str) -> None:
    """A page built from several reads must not mix states: what commits meanwhile stays out."""
    from workers.core.db import snapshot

    with transaction() as session:
        session.add(Workspace(name="Before"))
    with snapshot() as reader:
        first = reader.scalars(select(Workspace.name)).all()
        with transaction() as writer:
            writer.add(Workspace(name="Committed meanwhile"))
        second = reader.scalars(select(Workspace.name)).all()
    assert first == ["Before"]
    assert second == ["Before"]
    with snapshot() as later:
        assert sorted(later.scalars(select(Workspace.name)).all()) == [
            "Before",
            "Committed meanwhile",
        ]

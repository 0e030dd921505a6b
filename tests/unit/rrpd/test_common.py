"""Commands that take a workspace take its id or its name (``rrpd.common.find_workspace``)."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from rrpd.cli import cli
from tests.support import factories
from tests.support.outbox import CommittedTasks, as_call, paused_outbox


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_status_takes_a_workspace_by_name(session: Session) -> None:
    acme = factories.workspace(session, "Acme")
    factories.workspace(session, "Acme Two")
    session.commit()
    result = _run("status", "Acme")
    assert result.exit_code == 0, result.output
    assert f"Acme ({acme.id})" in result.output


def test_a_name_matches_ignoring_case_when_only_one_workspace_has_it(session: Session) -> None:
    acme = factories.workspace(session, "Acme")
    session.commit()
    result = _run("status", "  aCME ")
    assert result.exit_code == 0, result.output
    assert f"Acme ({acme.id})" in result.output


def test_an_exact_match_wins_over_matches_ignoring_case(session: Session) -> None:
    factories.workspace(session, "Acme")
    upper = factories.workspace(session, "ACME")
    session.commit()
    result = _run("status", "ACME")
    assert result.exit_code == 0, result.output
    assert f"ACME ({upper.id})" in result.output


@pytest.mark.parametrize(
    ("first", "second", "typed"), [("Acme", "Acme", "Acme"), ("Acme", "ACME", "acme")]
)
def test_an_ambiguous_name_is_refused_with_every_id(
    session: Session, first: str, second: str, typed: str
) -> None:
    one = factories.workspace(session, first)
    two = factories.workspace(session, second)
    session.commit()
    result = _run("status", typed)
    assert result.exit_code == 1
    assert f"workspace name {typed!r} is ambiguous: 2 workspaces have it" in result.output
    assert str(one.id) in result.output
    assert str(two.id) in result.output
    assert "give the id instead" in result.output


def test_an_ambiguous_name_lists_ten_ids_and_counts_the_rest(session: Session) -> None:
    for _ in range(12):
        factories.workspace(session, "Dup")
    session.commit()
    output = _run("status", "Dup").output
    assert "12 workspaces have it" in output
    assert "and 2 more); give the id instead" in output


@pytest.mark.parametrize("command", ["status", "audit", "sync-now"])
def test_an_unknown_name_is_refused(db: str, command: str) -> None:
    result = _run(command, "Nobody Inc")
    assert result.exit_code == 1
    assert "unknown workspace 'Nobody Inc': no workspace has this id or name" in result.output
    assert "rrpd workspace list" in result.output


def test_an_unknown_id_is_refused(db: str) -> None:
    unknown = uuid.uuid4()
    result = _run("status", str(unknown))
    assert result.exit_code == 1
    assert f"unknown workspace {unknown}" in result.output


def test_audit_and_sync_now_take_a_name_too(session: Session) -> None:
    ws = factories.workspace(session, "Acme")
    conn = factories.api_key_connection(session, ws)
    session.commit()
    with paused_outbox():
        result = _run("sync-now", "acme")
        assert result.exit_code == 0, result.output
        assert [c["kwargs"] for c in CommittedTasks(as_call)] == [
            {"connection_id": str(conn.id), "kind": "manual"}
        ]
    result = _run("audit", "Acme")
    assert result.exit_code == 0, result.output
    assert "pagerduty.sync.requested" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("sync-now",),
        ("audit",),
        ("member", "add"),
        ("rotation", "create"),
        ("token",),
    ],
)
def test_help_says_a_workspace_is_an_id_or_a_name(command: tuple[str, ...]) -> None:
    result = _run(*command, "--help")
    assert result.exit_code == 0
    assert " WORKSPACE" in result.output.splitlines()[0]
    assert "WORKSPACE is a workspace's id or its name" in result.output

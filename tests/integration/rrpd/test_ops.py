"""``rrpd status``, ``rrpd sync-now`` and ``rrpd attention`` against the test database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuditEvent, ConnectionStatus, SyncRun, TaskRecord, utcnow
from models.connection import STATUS_MEANINGS
from rrpd.cli import cli
from tests.support import factories
from tests.support.outbox import CommittedTasks, as_call, paused_outbox
from tests.support.secrets import stored_ciphertext

API_KEY = "u+opsTestKey0123456789"


@pytest.fixture
def published(db: str) -> Iterator[CommittedTasks]:
    """The tasks committed to the outbox (what will be published); no relay publishes them."""
    with paused_outbox():
        yield CommittedTasks(as_call)


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def _sync_run(session: Session, conn, status: str, minutes_ago: float, error: str | None = None):  # type: ignore[no-untyped-def]
    started = utcnow() - timedelta(minutes=minutes_ago)
    run = SyncRun(
        connection_id=conn.id,
        generation=conn.generation,
        kind="scheduled",
        status=status,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        duration_ms=2000,
        rows_created=3,
        rows_updated=1,
        requests_made=7,
        error=error,
    )
    session.add(run)
    session.flush()
    return run


def test_status_is_readable_and_holds_no_secret(session: Session) -> None:
    ws = factories.workspace(session, "Acme")
    owner = factories.member(session, ws, "olive@acme.test", display_name="Olive Owner")
    conn = factories.api_key_connection(session, ws, api_key=API_KEY, by=owner)
    conn.pagerduty_subdomain = "acme"
    conn.key_level = "account"
    _sync_run(session, conn, "succeeded", minutes_ago=3)
    session.commit()

    result = _run("status", str(ws.id))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Acme ({ws.id})" in out
    assert "status        connected: Connected to PagerDuty." in out
    assert f"{conn.id} (api_key, region us, account acme, account-level key" in out
    assert "by Olive Owner <olive@acme.test>" in out
    assert "succeeded (scheduled)" in out
    assert "3m ago" in out
    assert "7 PagerDuty requests" in out
    assert API_KEY not in out
    assert stored_ciphertext(session, conn, "api_key") not in out

    as_json = json.loads(_run("status", str(ws.id), "--json").output)
    assert as_json["status"] == "connected"
    assert as_json["connection_id"] == str(conn.id)
    assert as_json["last_sync"]["status"] == "succeeded"
    assert as_json["consecutive_sync_failures"] == 0
    assert API_KEY not in json.dumps(as_json)


def test_status_of_a_workspace_without_pagerduty(session: Session) -> None:
    ws = factories.workspace(session, "Plain")
    session.commit()
    result = _run("status", str(ws.id))
    assert result.exit_code == 0
    assert "not_connected: PagerDuty is not connected." in result.output


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("not-a-uuid", "unknown workspace 'not-a-uuid': no workspace has this id or name"),
        ("00000000-0000-0000-0000-000000000000", "unknown workspace"),
    ],
)
def test_status_refuses_bad_workspaces(db: str, arg: str, message: str) -> None:
    result = _run("status", arg)
    assert result.exit_code != 0
    assert message in result.output


def test_sync_now_enqueues_a_manual_sync_after_commit(
    session: Session, published: list[dict[str, Any]]
) -> None:
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws)
    session.commit()

    result = _run("sync-now", str(ws.id))
    assert result.exit_code == 0, result.output
    assert len(published) == 1
    call = published[0]
    assert call["name"] == "pagerduty.sync_connection"
    assert call["kwargs"] == {"connection_id": str(conn.id), "kind": "manual"}
    assert call["task_id"] in result.output

    record = session.get(TaskRecord, call["task_id"])
    assert record is not None
    assert record.workspace_id == ws.id
    audit = session.execute(select(AuditEvent).where(AuditEvent.workspace_id == ws.id)).scalar_one()
    assert (audit.action, audit.actor, audit.actor_member_id) == (
        "pagerduty.sync.requested",
        "operator",
        None,
    )
    assert audit.details["task_id"] == call["task_id"]


@pytest.mark.parametrize("status", [ConnectionStatus.NEEDS_REAUTH, None])
def test_sync_now_refuses_when_not_connected(
    session: Session, published: list[dict[str, Any]], status: ConnectionStatus | None
) -> None:
    ws = factories.workspace(session)
    if status is not None:
        factories.api_key_connection(session, ws, status=status)
    session.commit()
    result = _run("sync-now", str(ws.id))
    assert result.exit_code != 0
    expected = "is needs_reauth, not connected" if status else "has no PagerDuty connection"
    assert expected in result.output
    assert published == []
    assert session.execute(select(TaskRecord)).first() is None


def test_attention_lists_what_needs_an_operator(session: Session) -> None:
    def connection(name: str, status: ConnectionStatus = ConnectionStatus.CONNECTED):  # type: ignore[no-untyped-def]
        return factories.api_key_connection(
            session, factories.workspace(session, name), api_key=API_KEY, status=status
        )

    reauth = connection("Reauth Inc", ConnectionStatus.NEEDS_REAUTH)
    reauth.last_error = "Log in with OAuth 2.0 again."
    reauth.status_changed_at = utcnow() - timedelta(hours=5)
    invalid = connection("Invalid Ltd", ConnectionStatus.INVALID)
    invalid.last_error = "PagerDuty rejected this API key."
    failing = connection("Failing Co")
    failing.consecutive_sync_failures = 2
    _sync_run(session, failing, "succeeded", minutes_ago=30)
    first_failure = _sync_run(session, failing, "failed", 20, "PagerDuty answered 500")
    _sync_run(session, failing, "skipped", 15)
    _sync_run(session, failing, "failed", 10, "PagerDuty timed out")
    last_failed = connection("Last Run Failed")
    _sync_run(session, last_failed, "succeeded", 5)
    _sync_run(session, last_failed, "failed", 1, "schedule vanished")
    healthy = connection("Healthy")
    _sync_run(session, healthy, "failed", 9, "old trouble")
    _sync_run(session, healthy, "succeeded", 1)
    connection("Gone", ConnectionStatus.DISCONNECTED)
    stuck = connection("Stuck Disconnecting", ConnectionStatus.DISCONNECTING)
    stuck.status_changed_at = utcnow() - timedelta(minutes=30)
    # Past its deadline: driven again several times, still disconnecting (the next deadline an
    # hour away, so no live worker's deadlines loop drives it during the test).
    stuck.drive_at = utcnow() + timedelta(hours=1)
    stuck.drives = 4
    connection("Just Disconnecting", ConnectionStatus.DISCONNECTING)
    connection("Just Validating", ConnectionStatus.VALIDATING)
    session.commit()

    result = _run("attention")
    assert result.exit_code == 1, result.output  # something needs attention: for cron, monitors
    out = result.output
    lines = out.splitlines()
    assert lines[0].split() == ["WORKSPACE", "NAME", "PROBLEM", "SINCE", "LAST", "ERROR"]
    assert [line.split("  ")[1].strip() for line in lines[1:6]] == [
        "Stuck Disconnecting",
        "Reauth Inc",
        "Invalid Ltd",
        "Failing Co",
        "Last Run Failed",
    ]
    assert "stuck_disconnecting" in lines[1]
    assert "30m ago" in lines[1]
    assert "missed its deadline; driven again 4 time(s)" in lines[1]
    assert "needs_reauth" in lines[2]
    assert "5h ago" in lines[2]
    assert "Log in with OAuth" in lines[2]
    assert "sync_failing (2x)" in lines[4]
    assert "PagerDuty timed out" in lines[4]
    assert "sync_failing (1x)" in lines[5]
    for name in ("Healthy", "Gone", "Just Disconnecting", "Just Validating"):
        assert name not in out
    assert lines[-1] == "5 connection(s) need attention"
    assert API_KEY not in out

    as_json = _run("attention", "--json")
    assert as_json.exit_code == 1
    items = {i["workspace_name"]: i for i in json.loads(as_json.output)}
    assert set(items) == {
        "Stuck Disconnecting",
        "Reauth Inc",
        "Invalid Ltd",
        "Failing Co",
        "Last Run Failed",
    }
    assert items["Failing Co"]["problem"] == "sync_failing"
    assert items["Failing Co"]["since"] == first_failure.started_at.isoformat()
    assert items["Failing Co"]["failed_runs"] == 2
    assert items["Last Run Failed"]["last_error"] == "schedule vanished"
    assert items["Invalid Ltd"]["last_error"] == "PagerDuty rejected this API key."
    assert items["Reauth Inc"]["connection_id"] == str(reauth.id)


def test_attention_with_nothing_to_report(session: Session) -> None:
    factories.api_key_connection(session, factories.workspace(session))
    factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.DISCONNECTED
    )
    session.commit()
    result = _run("attention")
    assert result.exit_code == 0
    assert result.output.strip() == "no connection needs attention"
    as_json = _run("attention", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == []


@pytest.mark.parametrize(
    ("status", "minutes_ago", "problem"),
    [
        (ConnectionStatus.INVALID, 1, "invalid"),
        (ConnectionStatus.VALIDATING, 1, "stuck_validating"),
        (ConnectionStatus.DISCONNECTING, 1, "stuck_disconnecting"),
        (ConnectionStatus.CONNECTED, 1, "sync_now_late"),
    ],
)
def test_attention_exits_1_when_one_connection_needs_it(
    session: Session, status: ConnectionStatus, minutes_ago: int, problem: str
) -> None:
    factories.api_key_connection(session, factories.workspace(session, "Fine"))
    conn = factories.api_key_connection(session, factories.workspace(session, "Odd"), status=status)
    conn.status_changed_at = utcnow() - timedelta(minutes=minutes_ago)
    if status is not ConnectionStatus.INVALID:
        # Its work missed its deadline once (however long ago the state began).
        conn.sync_requested_at = (
            conn.status_changed_at if status is ConnectionStatus.CONNECTED else None
        )
        conn.drive_at = utcnow() + timedelta(hours=1)
        conn.drives = 1
    session.commit()
    result = _run("attention")
    assert result.exit_code == 1, result.output
    assert problem in result.output
    assert result.output.splitlines()[-1] == "1 connection(s) need attention"
    assert _run("attention", "--json").exit_code == 1


@pytest.mark.parametrize("claimed", [True, False])
def test_attention_names_a_connection_no_scheduled_sync_reaches(
    session: Session, claimed: bool
) -> None:
    """Beat stopped, or its fan-out fails every round (as it did on SQLite): connected
    connections fall further and further behind, and nothing else would say so."""
    from workers.core.settings import get_settings

    late = utcnow() - timedelta(seconds=4 * get_settings().sync_interval_seconds)
    factories.api_key_connection(session, factories.workspace(session, "Fine"))
    conn = factories.api_key_connection(session, factories.workspace(session, "Behind"))
    if claimed:
        conn.next_sync_at = late  # due long ago, never claimed since
    else:
        conn.next_sync_at = None  # connected long ago, never claimed at all
        conn.status_changed_at = late
    session.commit()
    result = _run("attention")
    assert result.exit_code == 1, result.output
    assert "sync_overdue" in result.output
    assert "Behind" in result.output
    assert "Fine" not in result.output
    assert result.output.splitlines()[-1] == "1 connection(s) need attention"
    (item,) = json.loads(_run("attention", "--json").output)
    assert item["problem"] == "sync_overdue"
    assert "is beat running" in item["last_error"]


def test_attention_help_states_the_exit_status() -> None:
    text = " ".join(_run("attention", "--help").output.split())
    assert "0 when no connection needs attention, 1 when the list is not empty" in text


def test_operator_commands_have_help() -> None:
    for command in ("status", "sync-now", "attention"):
        result = _run(command, "--help")
        assert result.exit_code == 0
        assert "Usage: " in result.output


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (ConnectionStatus.NEEDS_REAUTH, "syncs are paused until an admin logs in with OAuth 2.0"),
        (ConnectionStatus.INVALID, "syncs are paused until an admin connects with credentials"),
        (ConnectionStatus.VALIDATING, "the first sync follows a successful check"),
        (ConnectionStatus.DISCONNECTING, "the connection is being disconnected"),
    ],
)
def test_status_shows_no_next_sync_when_syncs_do_not_run(
    session: Session, status: ConnectionStatus, why: str
) -> None:
    ws = factories.workspace(session, "Paused")
    conn = factories.api_key_connection(session, ws, status=status)
    conn.next_sync_at = utcnow() + timedelta(seconds=30)  # left over from when it was connected
    session.commit()
    out = _run("status", str(ws.id)).output
    (line,) = [line for line in out.splitlines() if line.startswith("next sync")]
    assert line.split(None, 2)[2].startswith(f"none: {why}"), line
    as_json = json.loads(_run("status", str(ws.id), "--json").output)
    assert as_json["next_sync_at"] is None
    assert as_json["next_sync_note"].startswith(why)


# --- rrpd sync-now --wait, with real workers and the simulator ----------------------------------


def _connected_to_the_simulator(session: Session, sim) -> Any:  # type: ignore[no-untyped-def]
    from tests.support.stack import demo_api_key

    ws = factories.workspace(session, "Acme")
    conn = factories.api_key_connection(session, ws, api_key=demo_api_key(sim))
    session.commit()
    return ws, conn


@pytest.mark.integration
def test_sync_now_wait_prints_the_outcome_of_the_run(session: Session, sim, live_workers) -> None:
    ws, conn = _connected_to_the_simulator(session, sim)
    result = _run("sync-now", str(ws.id), "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("sync succeeded at "), result.output
    assert "PagerDuty requests" in last
    run = session.execute(select(SyncRun).where(SyncRun.connection_id == conn.id)).scalars().all()
    assert [r.status for r in run] == ["succeeded"]


@pytest.mark.integration
def test_sync_now_wait_fails_when_the_sync_fails(session: Session, sim, live_workers) -> None:
    ws, _ = _connected_to_the_simulator(session, sim)
    sim.control.post(
        "/faults", json={"kind": "error", "status": 500, "path_prefix": "/users", "times": 100}
    ).raise_for_status()
    result = _run("sync-now", str(ws.id), "--wait", "--timeout", "90")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("sync failed at "), result.output


@pytest.mark.integration
def test_sync_now_wait_gives_up_after_the_timeout(session: Session, sim, live_workers) -> None:
    ws, _ = _connected_to_the_simulator(session, sim)
    # Every request is slow, not only the first: a one-shot fault can be taken by a request of
    # a sync still retrying from an earlier test on the shared workers (the reset clears it).
    sim.control.post(
        "/faults", json={"kind": "latency", "latency_ms": 6000, "path_prefix": "/", "times": 50}
    ).raise_for_status()
    result = _run("sync-now", str(ws.id), "--wait", "--timeout", "2")
    assert result.exit_code == 1
    assert "no sync run finished within 2 s" in result.output


def test_attention_and_status_name_a_waiting_account_change_and_a_missing_schedule(
    session: Session,
) -> None:
    """A key of another account waits for an admin (workers/connections/account_change.py);
    a bound schedule the last directory read did not find is flagged, never silent."""
    from models import PagerDutySchedule, PendingStatus, RotationMode

    waiting = factories.api_key_connection(session, factories.workspace(session, "Switching"))
    waiting.pagerduty_subdomain = "acme"
    waiting.pending_status = PendingStatus.ACCOUNT_CHANGE
    waiting.pending_generation, waiting.pending_since = 2, utcnow()
    waiting.pending_message = "The new key belongs to another PagerDuty account (euco...)"
    waiting.pending_account = {"subdomain": "euco", "previous_subdomain": "acme", "schedules": {}}
    ws = factories.workspace(session, "Gone")
    gone = factories.api_key_connection(session, ws)
    gone.directory_read_at = utcnow()
    session.add(PagerDutySchedule(connection_id=gone.id, pagerduty_id="PSKEPT", name="Kept"))
    for name, sid in (("Lost one", "PSGONE"), ("Fine one", "PSKEPT")):
        rotation = factories.rotation(session, ws, name=name)
        rotation.mode, rotation.pagerduty_schedule_id = RotationMode.PAGERDUTY, sid
    session.commit()

    result = _run("attention")
    assert result.exit_code == 1, result.output
    items = {i["workspace_name"]: i for i in json.loads(_run("attention", "--json").output)}
    assert items["Switching"]["problem"] == "account_change_waiting"
    assert items["Gone"]["problem"] == "schedule_missing"
    assert items["Gone"]["last_error"].endswith("no longer lists: Lost one")

    from workers.rotations.views import BoundScheduleOut

    status = _run("status", str(ws.id), "--json")
    rotations = {r.name: r for r in _rotations(ws.id)}
    assert rotations["Lost one"].schedule == BoundScheduleOut(id="PSGONE", name=None, missing=True)
    assert rotations["Fine one"].schedule is not None
    assert rotations["Fine one"].schedule.missing is False
    assert status.exit_code == 0
    as_json = json.loads(_run("status", str(waiting.workspace_id), "--json").output)
    assert as_json["pending"]["account"] == {"subdomain": "euco", "previous_subdomain": "acme"}
    text = _run("status", str(waiting.workspace_id)).output
    assert "new key" in text
    assert "account_change: The new key belongs" in text


def test_status_names_a_pending_oauth_login_as_a_login_not_a_key(session: Session) -> None:
    """Logging in again with OAuth over a connected connection waits as its pending credential
    (workers/connections/pending_login.py): the operator reads that a login is being checked."""
    from models import AuthMethod, PendingStatus
    from workers.connections import messages

    conn = factories.api_key_connection(session, factories.workspace(session, "Relogin"))
    conn.pending_status, conn.pending_auth_method = PendingStatus.CHECKING, AuthMethod.OAUTH
    conn.pending_generation, conn.pending_since = 2, utcnow()
    conn.pending_message = messages.PENDING_LOGIN_CHECKING
    session.commit()

    text = _run("status", str(conn.workspace_id)).output
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("new ")]
    assert len(lines) == 1, text
    assert lines[0].startswith("new OAuth login"), text
    assert lines[0].endswith(f"checking: {messages.PENDING_LOGIN_CHECKING}"), text


def _rotations(workspace_id):  # type: ignore[no-untyped-def]
    from workers.core.db import transaction
    from workers.rotations.views import list_rotations

    with transaction() as s:
        return list_rotations(s, workspace_id)


@pytest.mark.parametrize(
    "status", [s for s in ConnectionStatus if STATUS_MEANINGS[s].deadline is not None]
)
def test_attention_calls_a_connection_stuck_exactly_when_the_deadlines_loop_drives_it(
    session: Session, published: CommittedTasks, status: ConnectionStatus
) -> None:
    """One table says both: never stuck while its task is still on time, stuck once the
    deadlines loop had to drive it (not 15 minutes later, when the loop had long ended it)."""
    from workers.deadlines.drive import run_round

    meaning = STATUS_MEANINGS[status]
    deadline = timedelta(seconds=meaning.deadline or 0)
    conn = factories.api_key_connection(session, factories.workspace(session, "Odd"), status=status)
    session.commit()

    def began(ago: timedelta) -> None:
        # Entered the state (or asked for a sync now) ``ago``, as the code that does it writes.
        at = utcnow() - ago
        conn.status_changed_at = at
        conn.sync_requested_at = at if status is ConnectionStatus.CONNECTED else None
        conn.expect_work(at)
        session.commit()

    margin = timedelta(seconds=2)  # the clock runs while the test does
    began(deadline - margin)
    assert _run("attention").exit_code == 0, "stuck before its deadline"
    assert run_round(utcnow()).claimed == 0

    began(deadline + margin)
    result = _run("attention", "--json")
    assert result.exit_code == 1
    assert [i["problem"] for i in json.loads(result.output)] == [meaning.stuck_problem]
    assert run_round(utcnow()).driven == {status.value: 1}  # the loop drives it at that moment

"""Commands an operator reaches for: ``rrpd status``, ``rrpd sync-now``, ``rrpd attention``.

They read and write the configured database directly (no API token needed) and never print a
secret: they show ids, statuses, times and the plain-words errors workspace admins see.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import click

from models.activity import SyncRunStatus
from models.connection import STATUS_MEANINGS, statuses
from rrpd.common import ago, checked_settings, find_workspace, plain, when, workspace_argument

# All three from the one table of what each status means (models.connection.STATUS_MEANINGS).
ATTENTION_STATUSES = tuple(sorted(statuses(lambda m: m.needs_attention)))
# Why there is no next sync: beat only syncs connected connections, whatever next_sync_at says.
NO_SYNC_BECAUSE = {s: m.no_sync_because for s, m in STATUS_MEANINGS.items() if m.no_sync_because}
# A connection past its deadline (workers.deadlines): its task was lost or is late, and the
# deadlines loop drives it again (or is not running).
STUCK_PROBLEMS = {s: m.stuck_problem for s, m in STATUS_MEANINGS.items() if m.stuck_problem}


# --- rrpd status --------------------------------------------------------------------------------


@click.command("status")
@workspace_argument
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(workspace: str, as_json: bool) -> None:
    """Show a workspace's PagerDuty connection, as the integrations page does."""
    from models import PagerDutyConnection, utcnow
    from workers.connections.status import connection_status
    from workers.core.db import transaction
    from workers.handoffs.views import workspace_next_handoffs

    checked_settings()
    with transaction() as session:
        ws = find_workspace(session, workspace)
        summary = connection_status(session, ws.id)
        conn = (
            session.get(PagerDutyConnection, summary.connection_id)
            if summary.connection_id
            else None
        )
        syncing = conn is not None and conn.status == "connected"
        extra: dict[str, Any] = {
            "workspace_name": ws.name,
            "generation": conn.generation if conn else None,
            "consecutive_sync_failures": conn.consecutive_sync_failures if conn else 0,
            "next_sync_at": conn.next_sync_at if conn is not None and syncing else None,
            "next_sync_note": None if syncing or conn is None else NO_SYNC_BECAUSE.get(conn.status),
            "access_token_expires_at": conn.access_token_expires_at if conn else None,
            "next_handoffs": workspace_next_handoffs(session, ws.id),
        }
    if as_json:
        document = {"workspace_id": ws.id, **extra, **summary.model_dump(exclude_unset=True)}
        click.echo(json.dumps(plain(document), indent=2))
        return
    now = utcnow()
    s = summary
    rows: list[tuple[str, str]] = [("workspace", f"{extra['workspace_name']} ({ws.id})")]
    rows.append(("status", f"{s.status}: {s.status_message}"))
    if s.connection_id is not None:
        account = s.account_subdomain or "-"
        how = f"{s.auth_method}, region {s.region}, account {account}"
        if s.key_level:
            how += f", {s.key_level}-level key"
        rows.append(("connection", f"{s.connection_id} ({how}, generation {extra['generation']})"))
        by = s.connected_by
        who = f" by {by.name} <{by.email}>" if by else ""
        rows.append(("connected", f"{when(s.connected_at)}{who}"))
        rows.append(
            (
                "status since",
                f"{when(s.status_changed_at)} ({ago(s.status_changed_at, now)})",
            )
        )
        if s.last_error:
            rows.append(("last error", f"{s.last_error} ({when(s.last_error_at)})"))
        run = s.last_sync
        if run is None:
            rows.append(("last sync", "never"))
        else:
            line = f"{run.status} ({run.kind}) at {when(run.started_at)}"
            line += f" ({ago(run.started_at, now)})"
            if run.duration_ms is not None:
                line += f", {run.duration_ms / 1000:.1f} s"
            line += (
                f", rows +{run.rows_created} ~{run.rows_updated} -{run.rows_deleted}"
                f", {run.requests_made} PagerDuty requests"
            )
            rows.append(("last sync", line))
            if run.error:
                rows.append(("sync error", run.error))
        rows.append(("last change", when(s.last_synced_at)))
        if extra["next_sync_note"]:
            rows.append(("next sync", f"none: {extra['next_sync_note']}"))
        else:
            rows.append(("next sync", when(extra["next_sync_at"])))
        if extra["consecutive_sync_failures"]:
            rows.append(("failing syncs", f"{extra['consecutive_sync_failures']} in a row"))
        if pending := s.pending:
            label = "new OAuth login" if pending.auth_method == "oauth" else "new key"
            rows.append((label, f"{pending.status}: {pending.message}"))
            for r in pending.rotations or []:
                rows.append(("if switched", f"{r.name} ({r.schedule_id}): {r.outcome}"))
        if s.auth_method == "oauth":
            rows.append(("token expires", when(extra["access_token_expires_at"])))
        rows.append(("mirror", f"{s.schedule_count} schedules, {s.linked_summary}"))
        for item in extra["next_handoffs"]:
            nxt = item["next_handoff"]
            text = nxt.text if nxt else "none known in the hours synced ahead"
            rows.append(("next handoff", f"{item['rotation']}: {text}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


# --- rrpd sync-now ------------------------------------------------------------------------------


@click.command("sync-now")
@workspace_argument
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the sync run recorded after this request finishes and print its outcome; "
    "exit status 1 if it failed, was skipped or did not finish within --timeout.",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    help="Seconds --wait waits.",
)
def sync_now(workspace: str, wait: bool, timeout: int) -> None:
    """Enqueue a manual sync of a workspace's connection (after the audit row commits)."""
    from models import ConnectionStatus, utcnow
    from workers.core.connection_rows import live_connection
    from workers.core.db import transaction
    from workers.sync.request import enqueue_manual_sync

    checked_settings()
    # Before the enqueue: any run that starts from here on covers this request.
    requested_at = utcnow()
    with transaction() as session:
        ws = find_workspace(session, workspace)
        conn = live_connection(session, ws.id)
        if conn is None:
            raise click.ClickException(f"workspace {ws.id} has no PagerDuty connection")
        if conn.status != ConnectionStatus.CONNECTED:
            raise click.ClickException(
                f"the connection is {conn.status}, not connected; a sync would do nothing "
                f"(see `rrpd status {ws.id}`)"
            )
        connection_id = conn.id
        task_id = enqueue_manual_sync(session, conn, actor="operator", via="rrpd")
    click.echo(f"sync enqueued for connection {connection_id}: task {task_id}")
    if not wait:
        click.echo(f"follow it with `rrpd status {ws.id}` (or in Flower)")
        return
    _wait_for_sync(connection_id, task_id, requested_at, timeout)


def _wait_for_sync(connection_id: uuid.UUID, task_id: str, since: datetime, timeout: int) -> None:
    """Poll for the first finished run that covers the request: the task's own run, or, when
    it was coalesced into a sync already running, the next pass of that one (started later)."""
    import time

    from sqlalchemy import or_, select

    from models import ConnectionStatus, PagerDutyConnection, SyncRun
    from workers.core.db import transaction

    deadline = time.monotonic() + timeout
    while True:
        with transaction() as session:
            run = session.execute(
                select(SyncRun)
                .where(
                    SyncRun.connection_id == connection_id,
                    SyncRun.finished_at.is_not(None),
                    or_(SyncRun.task_id == task_id, SyncRun.started_at >= since),
                )
                .order_by(SyncRun.started_at)
                .limit(1)
            ).scalar_one_or_none()
            conn = session.get(PagerDutyConnection, connection_id)
            outcome = _run_words(run) if run is not None else None
            status = conn.status if conn is not None else "gone"
            last_error = conn.last_error if conn is not None else None
        if run is not None and outcome is not None:
            succeeded = run.status == SyncRunStatus.SUCCEEDED
            click.echo(outcome)
            if not succeeded:
                raise click.exceptions.Exit(1)
            return
        if status != ConnectionStatus.CONNECTED:
            # needs_reauth, invalid, disconnected...: the sync will not run (or record) at all.
            why = f": {last_error}" if last_error else ""
            raise click.ClickException(f"no sync ran: the connection is now {status}{why}")
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"no sync run finished within {timeout} s (are `sync` workers running? see "
                "`rrpd attention` and Flower)"
            )
        time.sleep(0.5)


def _run_words(run) -> str:  # type: ignore[no-untyped-def]
    took = f" in {run.duration_ms / 1000:.1f} s" if run.duration_ms is not None else ""
    line = f"sync {run.status} at {when(run.finished_at)}{took}"
    if run.status == SyncRunStatus.SUCCEEDED:
        line += (
            f": rows +{run.rows_created} ~{run.rows_updated} -{run.rows_deleted}, "
            f"{run.requests_made} PagerDuty requests"
        )
    elif run.error:
        line += f": {run.error}"
    return line


# --- rrpd attention -----------------------------------------------------------------------------


def connections_needing_attention(session) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Live connections an operator should look at, worst first.

    ``needs_reauth`` and ``invalid`` (a workspace admin must act), connected ones whose
    syncs fail (``consecutive_sync_failures > 0`` or the latest sync run failed), and ones stuck
    in ``validating`` or ``disconnecting`` (their task was lost), and connected ones no
    scheduled sync has reached for several intervals (beat stopped, or its rounds fail).
    """
    from sqlalchemy import or_, select

    from models import ConnectionStatus, PagerDutyConnection, SyncRun, Workspace, utcnow
    from workers.deadlines.views import past_deadline_clause
    from workers.rotations.views import rotations_missing_schedule
    from workers.sync.fanout import OVERDUE_INTERVALS, overdue

    now = utcnow()
    late = set(session.scalars(select(PagerDutyConnection.id).where(overdue(now))))
    missing = rotations_missing_schedule(session)

    latest_run_status = (
        select(SyncRun.status)
        .where(SyncRun.connection_id == PagerDutyConnection.id)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(PagerDutyConnection, Workspace.name)
        .join(Workspace, Workspace.id == PagerDutyConnection.workspace_id)
        .where(
            or_(
                PagerDutyConnection.status.in_(ATTENTION_STATUSES),
                past_deadline_clause(now),
                (PagerDutyConnection.status == ConnectionStatus.CONNECTED)
                & (
                    (PagerDutyConnection.consecutive_sync_failures > 0)
                    | (latest_run_status == "failed")
                ),
                PagerDutyConnection.id.in_(late | set(missing)),
                PagerDutyConnection.pending_account.is_not(None),  # a key waits (not a login)
            )
        )
    ).all()
    found: list[dict[str, Any]] = []
    for conn, ws_name in rows:
        item: dict[str, Any] = {
            "workspace_id": conn.workspace_id,
            "workspace_name": ws_name,
            "connection_id": conn.id,
            "auth_method": conn.auth_method,
            "status": conn.status,
            "consecutive_sync_failures": conn.consecutive_sync_failures,
        }
        if conn.drive_at is not None and (conn.drives > 0 or conn.drive_at <= now):
            waiting = "a sync now" if conn.status == ConnectionStatus.CONNECTED else "its task"
            item.update(
                problem=STUCK_PROBLEMS.get(conn.status, f"stuck_{conn.status}"),
                since=conn.sync_requested_at or conn.status_changed_at,
                last_error=f"{waiting} missed its deadline; driven again {conn.drives} time(s), "
                f"next at {when(conn.drive_at)} (is the deadlines loop running on a worker?)",
                drives=conn.drives,
                drive_at=conn.drive_at,
            )
        elif conn.status in ATTENTION_STATUSES:
            item.update(
                problem=conn.status,
                since=conn.status_changed_at,
                last_error=conn.last_error,
            )
        elif conn.id in late:
            item.update(
                problem="sync_overdue",
                since=conn.next_sync_at or conn.status_changed_at,
                last_error=f"no scheduled sync for over {OVERDUE_INTERVALS} intervals: is beat "
                "running, and do its pagerduty.schedule_syncs rounds succeed (Flower, the "
                "schedule worker's log)?",
            )
        elif conn.pending_status == "account_change" and conn.pending_account is not None:
            item.update(problem="account_change_waiting", since=conn.pending_since)
            item["last_error"] = conn.pending_message  # what the admin reads, with the accounts
        elif conn.id in missing:
            item.update(
                problem="schedule_missing",
                since=conn.directory_read_at,
                last_error="bound to a schedule PagerDuty no longer lists: "
                + ", ".join(missing[conn.id]),
            )
        else:
            # The failure streak: failed runs since the last one that was not a failure.
            recent = session.execute(
                select(SyncRun.status, SyncRun.started_at, SyncRun.error)
                .where(SyncRun.connection_id == conn.id)
                .order_by(SyncRun.started_at.desc())
                .limit(max(conn.consecutive_sync_failures, 1) + 50)
            ).all()
            streak = []
            for run in recent:
                if run.status == "skipped":
                    continue
                if run.status != "failed":
                    break
                streak.append(run)
            item.update(
                problem="sync_failing",
                since=streak[-1].started_at if streak else conn.status_changed_at,
                last_error=(streak[0].error if streak else None) or conn.last_error,
                failed_runs=len(streak),
            )
        found.append(item)
    order = {
        "stuck_disconnecting": 0,
        "sync_overdue": 1,
        "needs_reauth": 2,
        "invalid": 3,
        "sync_failing": 4,
        "schedule_missing": 5,
        "stuck_validating": 6,
        "sync_now_late": 7,
        "account_change_waiting": 8,
    }
    found.sort(key=lambda i: (order[i["problem"]], i["since"].timestamp() if i["since"] else 0))
    return found


@click.command("attention")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def attention(as_json: bool) -> None:
    """List connections needing attention: needs_reauth, invalid, failing syncs, stuck.

    Exit status, for cron jobs and monitors: 0 when no connection needs attention, 1 when the
    list is not empty (with or without --json), 2 on a configuration error. A check that
    cannot run (e.g. the database does not answer) fails too, with a traceback and status 1.
    """
    from workers.core.db import transaction

    checked_settings()
    with transaction() as session:
        found = connections_needing_attention(session)
    if as_json:
        click.echo(json.dumps(plain(found), indent=2))
    elif not found:
        click.echo("no connection needs attention")
    else:
        _attention_table(found)
    if found:
        raise click.exceptions.Exit(1)


def _attention_table(found: list[dict[str, Any]]) -> None:
    from models import utcnow

    now = utcnow()
    header = ("WORKSPACE", "NAME", "PROBLEM", "SINCE", "LAST ERROR")
    table = [
        (
            str(i["workspace_id"]),
            _clip(i["workspace_name"], 24),
            i["problem"] + (f" ({_failures(i)}x)" if i["problem"] == "sync_failing" else ""),
            f"{when(i['since'])} ({ago(i['since'], now)})",
            _clip(i["last_error"] or "-", 100),
        )
        for i in found
    ]
    widths = [max(len(r[c]) for r in [header, *table]) for c in range(len(header) - 1)]
    for row in [header, *table]:
        click.echo("  ".join([*(v.ljust(w) for v, w in zip(row, widths, strict=False)), row[-1]]))
    click.echo(f"{len(found)} connection(s) need attention")


def _failures(item: dict[str, Any]) -> int:
    return max(int(item["consecutive_sync_failures"]), int(item.get("failed_runs", 0)))


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


COMMANDS: tuple[click.Command, ...] = (status, sync_now, attention)

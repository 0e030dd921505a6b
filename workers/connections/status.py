"""What the integrations page shows about a workspace's PagerDuty connection."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import (
    ConnectionStatus,
    Member,
    PagerDutyConnection,
    PagerDutySchedule,
    PagerDutyUser,
    SyncRun,
)
from workers.connections import account_change
from workers.connections.acting_user import acting_user_document
from workers.connections.messages import NOT_CONNECTED_WORDS, STATUS_WORDS
from workers.core.connection_rows import live_connection


def connection_status(session: Session, workspace_id: uuid.UUID) -> dict[str, Any]:
    """What the integrations page shows. ``{"status": "not_connected", ...}`` when not linked."""
    conn = live_connection(session, workspace_id)
    if conn is None:
        return {
            "status": "not_connected",
            "status_message": NOT_CONNECTED_WORDS,
            "connection_id": None,
            "auth_method": None,
            "region": None,
            "account_subdomain": None,
            "key_level": None,
            "connected_by": None,
            "connected_at": None,
            "status_changed_at": None,
            "last_error": None,
            "last_error_at": None,
            "last_synced_at": None,
            "last_sync": None,
            "user_count": 0,
            "schedule_count": 0,
            "linked_users": 0,
            "total_users": 0,
            "inactive_users": 0,
            "linked_summary": "0 of 0 users linked to members",
            "notice": None,
            "acting_user": None,
            "pending": None,
        }
    connected_by = None
    if conn.connected_by_member_id is not None:
        m = session.get(Member, conn.connected_by_member_id)
        if m is not None:
            connected_by = {"member_id": m.id, "name": m.display_name, "email": m.email}
    run = session.execute(
        select(SyncRun)
        .where(SyncRun.connection_id == conn.id)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    last_sync = None
    if run is not None:
        last_sync = {
            "status": run.status,
            "kind": run.kind,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_ms": run.duration_ms,
            "rows_created": run.rows_created,
            "rows_updated": run.rows_updated,
            "rows_deleted": run.rows_deleted,
            "requests_made": run.requests_made,
            "error": run.error,
        }
    if conn.last_checked_at is not None and (run is None or conn.last_checked_at > run.started_at):
        # A quiet scheduled check writes no run; the connection row keeps when it happened.
        last_sync = quiet_check(conn)
    total_users, linked_users, inactive_users = session.execute(
        select(
            func.count().filter(PagerDutyUser.active),
            func.count(PagerDutyUser.member_id),
            func.count().filter(~PagerDutyUser.active),
        ).where(PagerDutyUser.connection_id == conn.id)
    ).one()
    schedule_count = session.execute(
        select(func.count()).where(PagerDutySchedule.connection_id == conn.id)
    ).scalar_one()
    status = conn.status
    return {
        "status": conn.status,
        "status_message": conn.last_error
        if conn.last_error and status is not ConnectionStatus.CONNECTED
        else STATUS_WORDS.get(status, conn.status),
        "connection_id": conn.id,
        "auth_method": conn.auth_method,
        "region": conn.region,
        "account_subdomain": conn.pagerduty_subdomain,
        "key_level": conn.key_level,
        "connected_by": connected_by,
        "connected_at": conn.connected_at,
        "status_changed_at": conn.status_changed_at,
        "last_error": conn.last_error,
        "last_error_at": conn.last_error_at,
        "last_synced_at": conn.last_synced_at,
        "last_sync": last_sync,
        "user_count": total_users,
        "schedule_count": schedule_count,
        "linked_users": linked_users,
        "total_users": total_users,
        "inactive_users": inactive_users,
        "linked_summary": f"{linked_users} of {total_users} users linked to members"
        + (f" ({inactive_users} inactive in PagerDuty)" if inactive_users else ""),
        "notice": conn.notice,
        "acting_user": acting_user_document(session, conn),
        "pending": pending_document(
            conn,
            account_change.rotation_plan(session, conn)
            if account_change.waits_for_confirmation(conn)
            else None,
        ),
    }


def pending_document(
    conn: PagerDutyConnection, rotations: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The pending credential's check as the admin reads it; never its secret. ``rotations``:
    for a change of account, what confirming it does to each bound rotation."""
    if conn.pending_status is None or conn.pending_since is None:
        return None
    document: dict[str, Any] = {
        "status": conn.pending_status,
        "message": conn.pending_message or "",
        "since": conn.pending_since,
        "auth_method": conn.pending_auth_method or "api_key",
        "region": conn.pending_region,
    }
    if rotations is not None and conn.pending_account:
        document["account"] = {
            "subdomain": conn.pending_account.get("subdomain"),
            "previous_subdomain": conn.pending_account.get("previous_subdomain"),
        }
        document["rotations"] = rotations
    return document


def quiet_check(conn: PagerDutyConnection) -> dict[str, Any]:
    """The last quiet check as the API's ``last_sync`` shows a run: it succeeded, changed no
    row, and made ``last_check_requests`` PagerDuty requests."""
    started = conn.last_checked_at
    assert started is not None
    duration_ms = conn.last_check_ms
    return {
        "status": "succeeded",
        "kind": "scheduled",
        "started_at": started,
        "finished_at": started + timedelta(milliseconds=duration_ms or 0),
        "duration_ms": duration_ms,
        "rows_created": 0,
        "rows_updated": 0,
        "rows_deleted": 0,
        "requests_made": conn.last_check_requests or 0,
        "error": None,
    }

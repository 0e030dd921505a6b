"""What the panel page shows: the words, and the state the template renders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from api_stub.panel.session import picker_enabled, read_flash
from models import Member, Role, Workspace, utcnow
from workers.connections import oauth_login
from workers.connections.status import connection_status
from workers.core.access import Actor
from workers.core.db import snapshot
from workers.core.ids import parse_uuid
from workers.core.settings import get_settings
from workers.rotations.schedules import search_schedules
from workers.rotations.views import list_rotations

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parents[1] / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

ROLE_WORDS = {
    Role.PRIMARY_OWNER: "Primary Owner",
    Role.ADMIN: "Admin",
    Role.MEMBER: "Member",
}

# ?pagerduty=... on the way back from PagerDuty's consent page (see the OAuth callback).
RETURN_WORDS = {
    "connecting": ("ok", "PagerDuty authorized Round Robin. Finishing the connection..."),
    "denied": ("error", "The PagerDuty login was cancelled (access was denied). Nothing changed."),
}
REASON_WORDS = {
    "state_missing": "PagerDuty sent the browser back without saying which login it was, and "
    "this browser started none (or its login cookie was blocked). Start the login again here.",
    "state_invalid": "This PagerDuty login link is not valid or was already used. Start again.",
    "state_expired": "The PagerDuty login took too long and expired. Start again.",
    "missing_code": "PagerDuty did not send an authorization code back. Start again.",
    "invalid_code": "PagerDuty sent back an unusable authorization code. Start again.",
    "forbidden": "Only the workspace's Primary Owner or an Admin can connect PagerDuty.",
    "disconnecting": "PagerDuty is being disconnected; wait until that finishes, then connect.",
    "invalid_scope": "PagerDuty refused the permissions Round Robin asks for. Check the app's "
    "scopes (users.read, schedules.read).",
    "unauthorized_client": "PagerDuty says this OAuth app may not log in this way. Check the "
    "Client ID and the app's redirect URL.",
    "server_error": "PagerDuty had a problem during the login. Try again in a moment.",
    "temporarily_unavailable": "PagerDuty is temporarily unavailable. Try again in a moment.",
}
UNSETTLED = {"validating", "disconnecting"}
SYNC_WAIT_SECONDS = 60
# After connecting, the page refreshes until the first sync has run, for at most this long (a
# stopped sync worker must not make it refresh forever).
FIRST_SYNC_WAIT_SECONDS = 300
SYNC_OUTCOME_WORDS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "skipped": "skipped (the connection changed while it ran)",
    "running": "running",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def _ago(value: datetime) -> str:
    seconds = max(0, int((utcnow() - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _last_sync_words(run: dict[str, Any] | None) -> str:
    """The last sync *run* (time and outcome), which a quiet healthy connection renews every
    interval; "last change" (``last_synced_at``) is shown separately."""
    if run is None:
        return "not yet"
    at = run["finished_at"] or run["started_at"]
    words = SYNC_OUTCOME_WORDS.get(run["status"], run["status"])
    if run["status"] == "succeeded":
        changes = run["rows_created"] + run["rows_updated"] + run["rows_deleted"]
        words += ", nothing changed" if changes == 0 else f", {changes} changes"
    elif run["status"] == "failed" and run["error"]:
        words += f": {run['error']}"
    return f"{at.strftime('%Y-%m-%d %H:%M:%S UTC')} ({_ago(at)}) — {words}"


def _disconnected_words(session: Session, workspace_id: uuid.UUID, raw: str | None) -> str | None:
    """ "Disconnected; N rotations are now Manual" once the disconnect asked for from this page
    (``?disconnected=<connection id>``) has been done by the worker, and what the admin can do in
    PagerDuty (it has no API to revoke the credential)."""
    from models import AuditEvent, PagerDutyConnection
    from workers.disconnect.revoke import revoke_instructions
    from workers.disconnect.transaction import AUDIT_ACTION

    parsed = parse_uuid(raw)
    if parsed is None:
        return None
    connection_id = str(parsed)
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.workspace_id == workspace_id, AuditEvent.action == AUDIT_ACTION)
        .order_by(AuditEvent.created_at.desc())
        .limit(20)
    )
    for event in events:
        details = event.details if isinstance(event.details, dict) else {}
        if details.get("connection_id") != connection_id:
            continue
        names = sorted(
            (str(r.get("name")) for r in details.get("rotations_made_manual") or []), key=str.lower
        )
        if not names:
            words = "Disconnected; no rotation followed PagerDuty, so none changed."
        else:
            are = "rotation is" if len(names) == 1 else "rotations are"
            words = f"Disconnected; {len(names)} {are} now Manual ({', '.join(names)})."
        conn = session.get(PagerDutyConnection, uuid.UUID(connection_id))
        if conn is not None:
            words += " " + revoke_instructions(
                conn.auth_method, conn.pagerduty_subdomain, conn.region
            )
        return words
    return None


def _picker_choices(session: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Workspace.name, Member)
        .join(Member, Member.workspace_id == Workspace.id)
        .order_by(Workspace.name, Workspace.id, Member.display_name)
    ).all()
    return [
        {
            "id": str(m.id),
            "label": f"{m.display_name} <{m.email}> — {ROLE_WORDS.get(m.role, m.role)}",
            "workspace": name,
        }
        for name, m in rows
    ]


def page_state(request: Request, actor: Actor | None) -> dict[str, Any]:
    q = request.query_params
    notices: list[dict[str, str]] = []
    returned = q.get("pagerduty")
    # "connecting" is added below, only while the connection is still being finished.
    if returned in RETURN_WORDS and returned != "connecting":
        kind, text = RETURN_WORDS[returned]
        notices.append({"kind": kind, "text": text})
    elif returned == "error":
        reason = q.get("reason", "")
        notices.append(
            {
                "kind": "error",
                "text": REASON_WORDS.get(
                    reason, "The PagerDuty login did not complete. Start again."
                ),
            }
        )
    flash = read_flash(request)
    if flash:
        notices.append(flash)
    ctx: dict[str, Any] = {
        "actor": None,
        "notices": notices,
        "picker_enabled": picker_enabled(),
        "oauth_redirect_uri": get_settings().oauth_redirect_uri,
        "oauth_scopes": list(oauth_login.OAUTH_SCOPES),
        "last_sync_words": _last_sync_words,
        "app_login": bool(get_settings().app_login_url),
        "choices": [],
        "role_words": ROLE_WORDS,
        "when": _when,
        "refresh": False,
    }
    # One snapshot for the whole page: its status, last sync and rotations agree.
    with snapshot() as session:
        if picker_enabled():
            ctx["choices"] = _picker_choices(session)
        if actor is None:
            return ctx
        member = session.get(Member, actor.member_id)
        workspace = session.get(Workspace, actor.workspace_id)
        status = connection_status(session, actor.workspace_id)
        rotations = list_rotations(session, actor.workspace_id)
        schedules, _ = search_schedules(session, actor.workspace_id, None, limit=200)
        disconnected = (
            _disconnected_words(session, actor.workspace_id, q.get("disconnected"))
            if status["status"] != "disconnecting" and q.get("disconnected")
            else None
        )
    if returned == "connecting" and status["status"] in ("validating", "not_connected"):
        # Only until the outcome is known: then the connection block says it.
        kind, text = RETURN_WORDS["connecting"]
        notices.insert(0, {"kind": kind, "text": text})
    if disconnected:
        notices.insert(0, {"kind": "ok", "text": disconnected})
    ctx.update(
        actor={
            "id": str(actor.member_id),
            "name": member.display_name if member else "?",
            "email": member.email if member else "",
            "role": actor.role.value,
            "may_manage": actor.may_manage,
        },
        workspace={"id": str(actor.workspace_id), "name": workspace.name if workspace else "?"},
        status=status,
        rotations=rotations,
        schedules=schedules,
    )
    binding_pending = any(
        r["mode"] == "pagerduty" and r["last_synced_at"] is None for r in rotations
    )
    ctx["sync_pending"] = status["status"] == "connected" and _sync_pending(
        q.get("sync_requested"), status["last_sync"]
    )
    # Connected but never synced: the first sync is on its way; keep refreshing (for a while)
    # so schedules to bind and the people appear without a manual reload.
    ctx["first_sync_pending"] = (
        status["status"] == "connected"
        and status["last_sync"] is None
        and status["status_changed_at"] is not None
        and utcnow() - status["status_changed_at"] < timedelta(seconds=FIRST_SYNC_WAIT_SECONDS)
    )
    ctx["refresh"] = (
        status["status"] in UNSETTLED
        or (returned == "connecting" and status["status"] == "not_connected")
        or (binding_pending and status["status"] == "connected")
        or ctx["sync_pending"]
        or ctx["first_sync_pending"]
    )
    return ctx


def _sync_pending(requested: str | None, last_sync: dict[str, Any] | None) -> bool:
    """After "Sync now" or a bind (``?sync_requested=<epoch seconds>``): has a sync started
    since then and finished? Gives up after a minute so a page never refreshes forever."""
    # ASCII digits only ("²".isdigit() is true) and a sane length, so nonsense is ignored
    # rather than a 500.
    if not requested or not (requested.isascii() and requested.isdigit()) or len(requested) > 12:
        return False
    since = datetime.fromtimestamp(int(requested), UTC)
    if utcnow() - since > timedelta(seconds=SYNC_WAIT_SECONDS) or since > utcnow():
        return False
    if last_sync is None or last_sync["finished_at"] is None:
        return True
    return bool(last_sync["started_at"] < since)

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
from api_stub.panel.times import exact, handoff_view, last_sync_words, when
from models import (
    Member,
    PagerDutyConnection,
    Role,
    SyncRun,
    SyncRunStatus,
    Workspace,
    utcnow,
)
from workers.connections import oauth_login
from workers.connections.status import StatusOut, SyncRunOut, connection_status
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
    "invalid_scope": "PagerDuty refused the permissions Round Robin asks for. Check that the "
    f"app's scopes include {', '.join(s for s in oauth_login.OAUTH_SCOPES if s != 'openid')}.",
    "unauthorized_client": "PagerDuty says this OAuth app may not log in this way. Check the "
    "Client ID and the app's redirect URL.",
    "server_error": "PagerDuty had a problem during the login. Try again in a moment.",
    "temporarily_unavailable": "PagerDuty is temporarily unavailable. Try again in a moment.",
}
UNSETTLED = {"validating", "disconnecting"}
# States in which a sync asked for from this page is followed until its run is recorded.
SYNC_FOLLOWED = {"connected", "invalid", "needs_reauth"}
# A refused form field, in the words of someone pasting from PagerDuty (the service's own
# message names the API field, e.g. "api_key must be ..."): (modal, field, words).
FIELD_ERRORS = {
    "invalid_api_key": (
        "api-key-modal",
        "api_key",
        (
            "That does not look like a PagerDuty API key: it must be 16 to 128 characters with no "
            "spaces (for example u+abc... or a 20-character token). Copy the whole key from "
            "PagerDuty (Integrations > API Access Keys) and paste it again."
        ),
    ),
    "invalid_client_id": (
        "oauth-modal",
        "client_id",
        (
            "That does not look like a Client ID: it must be 1 to 200 characters with no spaces. "
            "Copy it again from PagerDuty (Integrations > App Registration > your app)."
        ),
    ),
    "invalid_client_secret": (
        "oauth-modal",
        "client_secret",
        (
            "That does not look like a Client Secret: it must be 1 to 500 characters with no "
            "spaces. Copy it again from PagerDuty (Integrations > App Registration > your app)."
        ),
    ),
}
# Rejections that already tried both regions, or that are not about the region at all: a
# "choose the other region" hint under them would contradict what the admin just read.
# A key refused at a sync had worked in its region: it was deleted, not sent to the wrong one.
_NOT_A_REGION_PROBLEM = (
    "both regions",
    "plan does not include",
    "lacks permission",
    "it was deleted",
)
SYNC_WAIT_SECONDS = 60
# After connecting, the page refreshes until the first sync has run, for at most this long (a
# stopped sync worker must not make it refresh forever).
FIRST_SYNC_WAIT_SECONDS = 300


# A Member cannot log in to PagerDuty for the workspace: tell them whom to ask instead of the
# admin's instructions in last_error.
MEMBER_WORDS = {
    "invalid": "PagerDuty refused this connection's credentials, so rotations that follow "
    "PagerDuty are not updating. Ask the workspace's Primary Owner or an Admin to connect "
    "PagerDuty again.",
    "needs_reauth": "PagerDuty no longer accepts this connection's login, so rotations that "
    "follow PagerDuty are not updating. Ask the workspace's Primary Owner or an Admin to log "
    "in to PagerDuty again.",
}


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _people_words(status: StatusOut) -> str:
    linked, total = status.linked_users, status.total_users
    inactive = status.inactive_users
    words = f"{linked} of {_plural(total, 'user')} linked to members"
    if inactive:
        words += f" ({inactive} inactive in PagerDuty)"
    return words


def region_hint_applies(status: StatusOut) -> bool:
    """The "checked with the US region; choose EU if..." hint, only where the region may be
    the cause: a refused API key that was not already tried in both regions."""
    if status.status != "invalid" or status.auth_method != "api_key":
        return False
    error = (status.last_error or "").lower()
    return "rejected" in error and not any(words in error for words in _NOT_A_REGION_PROBLEM)


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
    field_error = None
    if flash and flash.get("field") in FIELD_ERRORS:
        # Shown next to its field in the reopened modal, not as a page notice.
        modal, field, words = FIELD_ERRORS[flash["field"]]
        field_error = {"modal": modal, "field": field, "text": words}
    elif flash:
        notices.append({"kind": flash["kind"], "text": flash["text"]})
    ctx: dict[str, Any] = {
        "actor": None,
        "notices": notices,
        "picker_enabled": picker_enabled(),
        "oauth_redirect_uri": get_settings().oauth_redirect_uri,
        "oauth_scopes": list(oauth_login.OAUTH_SCOPES),
        "last_sync_words": last_sync_words,
        "app_login": bool(get_settings().app_login_url),
        "choices": [],
        "role_words": ROLE_WORDS,
        "when": when,
        "plural": _plural,
        "exact": exact,
        "member_words": MEMBER_WORDS,
        "refresh": False,
        "session_ended": False,
        "field_error": field_error,
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
        last_good_sync = _last_good_sync(session, status.connection_id)
        disconnected = (
            _disconnected_words(session, actor.workspace_id, q.get("disconnected"))
            if status.status != "disconnecting" and q.get("disconnected")
            else None
        )
    if returned == "connecting" and status.status in ("validating", "not_connected"):
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
        last_good_sync=last_good_sync,
        people_words=_people_words(status),
        region_hint=region_hint_applies(status),
        handoffs={r.id: handoff_view(r.next_handoff) for r in rotations},
    )
    binding_pending = any(r.mode == "pagerduty" and r.last_synced_at is None for r in rotations)
    # Broken meanwhile too: an OAuth refresh PagerDuty refuses commits needs_reauth before the
    # sync records its failed run, and the page must not stop halfway through the story.
    ctx["sync_pending"] = status.status in SYNC_FOLLOWED and _sync_pending(
        q.get("sync_requested"), status.last_sync
    )
    # Connected but never synced: the first sync is on its way; keep refreshing (for a while)
    # so schedules to bind and the people appear without a manual reload.
    ctx["first_sync_pending"] = (
        status.status == "connected"
        and status.last_sync is None
        and status.status_changed_at is not None
        and utcnow() - status.status_changed_at < timedelta(seconds=FIRST_SYNC_WAIT_SECONDS)
    )
    ctx["refresh"] = (
        status.status in UNSETTLED
        or (returned == "connecting" and status.status == "not_connected")
        or (binding_pending and status.status == "connected")
        or ctx["sync_pending"]
        or ctx["first_sync_pending"]
        or (status.pending is not None and status.pending.status == "checking")
    )
    return ctx


def _last_good_sync(session: Session, connection_id: uuid.UUID | None) -> datetime | None:
    """When a sync last succeeded: still worth showing when the connection breaks (since when
    rotations have not been updated)."""
    if connection_id is None:
        return None
    recorded = session.scalars(
        select(SyncRun.finished_at)
        .where(
            SyncRun.connection_id == connection_id,
            SyncRun.status == SyncRunStatus.SUCCEEDED,
            SyncRun.finished_at.is_not(None),
        )
        .order_by(SyncRun.finished_at.desc())
        .limit(1)
    ).one_or_none()
    # A quiet check succeeded too, without a row (docs/sync-and-disconnect.md, "Quiet checks").
    checked = session.scalar(
        select(PagerDutyConnection.last_checked_at).where(PagerDutyConnection.id == connection_id)
    )
    return max((t for t in (recorded, checked) if t is not None), default=None)


def _sync_pending(requested: str | None, last_sync: SyncRunOut | None) -> bool:
    """After "Sync now" or a bind (``?sync_requested=<epoch seconds>``): has a sync started
    since then and finished? Gives up after a minute so a page never refreshes forever."""
    # ASCII digits only ("²".isdigit() is true) and a sane length, so nonsense is ignored
    # rather than a 500.
    if not requested or not (requested.isascii() and requested.isdigit()) or len(requested) > 12:
        return False
    since = datetime.fromtimestamp(int(requested), UTC)
    if utcnow() - since > timedelta(seconds=SYNC_WAIT_SECONDS) or since > utcnow():
        return False
    if last_sync is None or last_sync.finished_at is None:
        return True
    return bool(last_sync.started_at < since)

"""The integrations panel: Round Robin's Settings > Integrations page for PagerDuty.

Server-rendered HTML (Jinja2, no front-end build). Every form post calls the same service
functions as the JSON API (``workers.connections``), inside one transaction, then redirects
back to ``GET /panel`` (post/redirect/get). See docs/panel.md.

Who is acting: a JWT in an HttpOnly cookie, verified exactly like the API's bearer tokens
(``api_stub.auth.verify_token`` + ``resolve_actor``: the effective role is the lower of the
token's and the stored one). Outside production a member picker issues that cookie for any
member (a local run has no Round Robin app to log in with); in production the picker is off and
the cookie is only set from a real token bound to this browser's sign-in (``GET /panel/login``
then ``GET /panel?token=<JWT with the login nonce>``).

CSRF: a random nonce in a cookie and, in every form, an HMAC of (nonce, who is acting) keyed
with a secret derived from ``RRPD_API_JWT_SECRET``. A POST without a matching token, or with an
``Origin`` that is not ours, gets 403 ``csrf_failed`` (JSON, the API's error shape).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api_stub.auth import issue_token, verify_login_token, verify_token
from api_stub.errors import ApiError, error_response
from api_stub.schemas import control_message, has_control_characters
from models import Member, Role, Workspace, utcnow
from workers.connections import oauth_login, setup
from workers.connections.status import connection_status
from workers.core.access import Actor, Missing, ServiceError, resolve_actor
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.disconnect.request import request_disconnect
from workers.rotations import binding
from workers.rotations.schedules import search_schedules
from workers.rotations.views import list_rotations, rotation_missing
from workers.sync.request import sync_now as request_sync_now

router = APIRouter(prefix="/panel", include_in_schema=False)

IDENTITY_COOKIE = "rrpd_panel_session"
CSRF_COOKIE = "rrpd_panel_csrf"
LOGIN_COOKIE = "rrpd_panel_login"
LOGIN_TTL_SECONDS = 600
FLASH_COOKIE = "rrpd_panel_flash"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELD = 2048

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
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


def picker_enabled() -> bool:
    """The member picker exists only outside production (see docs/panel.md)."""
    return not get_settings().is_production


# --- CSRF ---------------------------------------------------------------------------------------


def _csrf_key() -> bytes:
    return hashlib.sha256(b"rrpd-panel-csrf\x00" + get_settings().jwt_secret().encode()).digest()


def csrf_token_for(nonce: str, subject: str) -> str:
    """The form token for a cookie nonce and who is acting ("anonymous" before choosing)."""
    mac = hmac.new(_csrf_key(), f"{nonce}\x00{subject}".encode(), hashlib.sha256)
    return mac.hexdigest()


def login_nonce_for(login_cookie: str) -> str:
    """The nonce a sign-in token must carry for the browser holding ``login_cookie``.

    The cookie stays in the browser (HttpOnly); only this keyed hash of it travels to the Round
    Robin app and back inside the token, so a token minted for one browser signs in no other.
    """
    mac = hmac.new(_csrf_key(), f"login\x00{login_cookie}".encode(), hashlib.sha256)
    return mac.hexdigest()


def _subject(actor: Actor | None) -> str:
    return f"{actor.workspace_id}:{actor.member_id}" if actor else "anonymous"


def _origin_ok(request: Request) -> bool:
    """An Origin header, when the browser sends one, must be this site."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {
        f"{request.url.scheme}://{request.headers.get('host', '')}",
        _origin_of(get_settings().public_url),
    }
    return origin.rstrip("/") in ours


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check_csrf(request: Request, form: dict[str, str], actor: Actor | None) -> None:
    nonce = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    expected = csrf_token_for(nonce, _subject(actor)) if nonce else ""
    if not nonce or not sent or not hmac.compare_digest(sent, expected):
        raise ApiError(
            403,
            "csrf_failed",
            "This form was not sent from the integrations panel (missing or wrong CSRF token). "
            "Reload the panel and try again.",
        )
    if not _origin_ok(request):
        raise ApiError(403, "csrf_failed", "This form was sent from another site.")


# --- who is acting ------------------------------------------------------------------------------


def _cookie_secure() -> bool:
    return get_settings().public_url.startswith("https://")


def current_actor(request: Request) -> Actor | None:
    """The member the panel acts as, from the session cookie; None if absent or no longer valid."""
    token = request.cookies.get(IDENTITY_COOKIE)
    if not token:
        return None
    try:
        workspace_id, member_id, role = verify_token(token)
    except ApiError:
        return None
    with transaction() as session:
        return resolve_actor(session, workspace_id, member_id, role)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "Send the panel's forms as form data.")
    raw = await request.form()
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            out[key] = value[:MAX_FORM_FIELD]
    return out


def _redirect(query: dict[str, str] | None = None) -> RedirectResponse:
    url = "/panel" + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _flash(response: Response, kind: str, text: str) -> Response:
    response.set_cookie(
        FLASH_COOKIE,
        base64.urlsafe_b64encode(json.dumps({"kind": kind, "text": text[:500]}).encode()).decode(),
        max_age=60,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(),
        path="/panel",
    )
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError, RecursionError):  # a crafted cookie is simply ignored
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("ok", "error"):
        return None
    return {"kind": data["kind"], "text": str(data.get("text", ""))[:500]}


def _set_identity(response: Response, token: str) -> None:
    response.set_cookie(
        IDENTITY_COOKIE,
        token,
        max_age=get_settings().api_jwt_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(),
        path="/",
    )


# --- the page -----------------------------------------------------------------------------------


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
    """"Disconnected; N rotations are now Manual" once the disconnect asked for from this page
    (``?disconnected=<connection id>``) has been done by the worker, and what the admin can do in
    PagerDuty (it has no API to revoke the credential)."""
    from models import AuditEvent, PagerDutyConnection
    from workers.disconnect.revoke import revoke_instructions
    from workers.disconnect.transaction import AUDIT_ACTION

    try:
        connection_id = str(uuid.UUID(raw or ""))
    except ValueError:
        return None
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


def _page_state(request: Request, actor: Actor | None) -> dict[str, Any]:
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
    flash = _read_flash(request)
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
    with transaction() as session:
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
    return last_sync["started_at"] < since


@router.get("/login")
def login(request: Request) -> Response:
    """Start a sign-in through the Round Robin app, bound to this browser.

    A fresh random login cookie is set here, and the browser goes to ``RRPD_APP_LOGIN_URL``
    with ``nonce`` (a keyed hash of the cookie) and ``return_to``. The app signs the person in,
    mints a token with that ``nonce`` claim and sends the browser to ``/panel?token=...``.
    """
    app_login_url = get_settings().app_login_url
    if not app_login_url:
        raise ApiError(
            404,
            "login_not_configured",
            "Signing in through the Round Robin app is not configured (RRPD_APP_LOGIN_URL).",
        )
    cookie = secrets.token_urlsafe(32)
    target = oauth_login.with_query(
        app_login_url,
        {
            "nonce": login_nonce_for(cookie),
            "return_to": f"{get_settings().public_url.rstrip('/')}/panel",
        },
    )
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    # Lax, not Strict: it must come back with the app's cross-site redirect to /panel?token=.
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=LOGIN_TTL_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(),
        path="/panel",
    )
    return response


@router.get("", response_class=HTMLResponse)
def panel(request: Request, token: str | None = None) -> Response:
    if token:
        # A token from the Round Robin app: it must carry the nonce of the sign-in this very
        # browser started (/panel/login), or anyone could send a victim a link that signs them
        # in as the attacker (login CSRF) and collect the API key they then paste. Kept in an
        # HttpOnly cookie and dropped from the address bar; the login cookie is single-use.
        login_cookie = request.cookies.get(LOGIN_COOKIE)
        try:
            verify_login_token(token, login_nonce_for(login_cookie) if login_cookie else None)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, headers=exc.headers)
        response = _redirect()
        _set_identity(response, token)
        response.delete_cookie(LOGIN_COOKIE, path="/panel")
        return response
    actor = current_actor(request)
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    ctx = _page_state(request, actor)
    ctx["csrf_token"] = csrf_token_for(nonce, _subject(actor))
    script_nonce = secrets.token_urlsafe(16)
    ctx["script_nonce"] = script_nonce
    html = _templates.get_template("panel.html").render(**ctx)
    response = HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'nonce-{script_nonce}'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
            ),
            "X-Frame-Options": "DENY",
            # same-origin, not no-referrer: with no-referrer a browser posts the panel's forms
            # with "Origin: null", which the CSRF check refuses. Other sites get no referrer.
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        },
    )
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(),
        path="/panel",
    )
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path="/panel")
    return response


# --- forms --------------------------------------------------------------------------------------
#
# Handlers are async only to read the form; database work (blocking) runs in the thread pool.


async def _checked(request: Request) -> tuple[Actor, dict[str, str]]:
    """The form, after the CSRF check, and who is acting (401 if nobody is)."""
    form = await _form(request)
    actor = await run_in_threadpool(current_actor, request)
    _check_csrf(request, form, actor)
    if actor is None:
        raise ApiError(
            401, "unauthenticated", "Choose who you are on the panel first (no panel session)."
        )
    _refuse_control_characters(form)
    return actor, form


def _refuse_control_characters(form: dict[str, str]) -> None:
    """422 for a NUL or another control character inside a field (a browser never sends one;
    surrounding whitespace is the service's to strip, e.g. a key pasted with a trailing tab)."""
    bad = sorted(k for k, v in form.items() if has_control_characters(v.strip()))
    if bad:
        details = [{"field": k[:64], "message": control_message(k[:64])} for k in bad]
        raise ApiError(
            422,
            "invalid_request",
            "; ".join(f"{d['field']}: {d['message']}" for d in details),
            details=details,
        )


async def _apply(work: Callable[[Session], str], query: dict[str, str] | None = None) -> Response:
    """Run ``work`` in one transaction; flash its message, or the service error's words."""

    def run() -> str:
        with transaction() as session:
            return work(session)

    try:
        text = await run_in_threadpool(run)
    except ServiceError as exc:
        return _flash(_redirect(), "error", exc.message)
    return _flash(_redirect(query), "ok", text)


def _sync_requested() -> dict[str, str]:
    # Whole seconds, rounded down: a sync that starts right after still counts.
    return {"sync_requested": str(int(utcnow().timestamp()))}


def _rotation_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise rotation_missing() from None


@router.post("/act-as")
async def act_as(request: Request) -> Response:
    """Local runs only: act as the chosen member (the panel's role picker)."""
    if not picker_enabled():
        raise ApiError(
            403,
            "picker_disabled",
            "The member picker is disabled in production; open the panel with a token.",
        )
    form = await _form(request)
    _check_csrf(request, form, await run_in_threadpool(current_actor, request))

    def choose() -> tuple[str, str] | None:
        try:
            member_id = uuid.UUID(form.get("member_id", ""))
        except ValueError:
            return None
        with transaction() as session:
            member = session.get(Member, member_id)
            if member is None:
                return None
            token = issue_token(member.workspace_id, member.id, member.role)
            role = ROLE_WORDS.get(member.role, member.role)
            return token, f"You are now acting as {member.display_name} ({role})."

    chosen = await run_in_threadpool(choose)
    if chosen is None:
        return _flash(_redirect(), "error", "Choose a member of a workspace.")
    token, text = chosen
    response = _flash(_redirect(), "ok", text)
    _set_identity(response, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await _form(request)
    _check_csrf(request, form, await run_in_threadpool(current_actor, request))
    response = _redirect()
    response.delete_cookie(IDENTITY_COOKIE, path="/")
    return response


@router.post("/api-key")
async def save_api_key(request: Request) -> Response:
    actor, form = await _checked(request)

    def work(session: Session) -> str:
        setup.set_api_key(session, actor, form.get("api_key", ""), form.get("region") or "us")
        return "API key saved. Checking it with PagerDuty..."

    return await _apply(work)


@router.post("/oauth")
async def start_oauth(request: Request) -> Response:
    actor, form = await _checked(request)

    def run() -> str:
        with transaction() as session:
            return oauth_login.start_oauth(
                session,
                actor,
                form.get("client_id", ""),
                form.get("client_secret", ""),
                form.get("region") or "us",
            ).authorization_url

    try:
        url = await run_in_threadpool(run)
    except ServiceError as exc:
        return _flash(_redirect(), "error", exc.message)
    # Off to PagerDuty's consent page; the callback brings the browser back to /panel.
    return RedirectResponse(
        url,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.post("/disconnect")
async def disconnect(request: Request) -> Response:
    actor, _ = await _checked(request)

    def run() -> str:
        with transaction() as session:
            return str(request_disconnect(session, actor).connection.id)

    try:
        connection_id = await run_in_threadpool(run)
    except Missing as exc:
        if exc.code != "not_connected":
            return _flash(_redirect(), "error", exc.message)
        # A second tab, or a double click: the outcome the person wanted is already there.
        return _flash(_redirect(), "ok", "PagerDuty is already disconnected; nothing to do.")
    except ServiceError as exc:
        return _flash(_redirect(), "error", exc.message)
    # The page refreshes while disconnecting, then says how many rotations became Manual.
    return _flash(
        _redirect({"disconnected": connection_id}),
        "ok",
        "Disconnecting from PagerDuty. Bound rotations go back to Manual.",
    )


@router.post("/sync")
async def sync_now(request: Request) -> Response:
    actor, _ = await _checked(request)

    def work(session: Session) -> str:
        request_sync_now(session, actor)
        return "Sync started. Rotations update in a few seconds."

    return await _apply(work, _sync_requested())


@router.post("/rotations/{rotation_id}/bind")
async def bind_rotation(rotation_id: str, request: Request) -> Response:
    actor, form = await _checked(request)

    def work(session: Session) -> str:
        bound = binding.bind_rotation(
            session, actor, _rotation_id(rotation_id), form.get("schedule_id", "")
        )
        return f"{bound.rotation.name} now follows its PagerDuty schedule. Filling it in..."

    return await _apply(work, _sync_requested())


@router.post("/rotations/{rotation_id}/manual")
async def make_manual(rotation_id: str, request: Request) -> Response:
    actor, _ = await _checked(request)

    def work(session: Session) -> str:
        rotation = binding.unbind_rotation(session, actor, _rotation_id(rotation_id))
        return f"{rotation.name} is Manual again (members and who is on duty are kept)."

    return await _apply(work)

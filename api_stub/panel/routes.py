"""The integrations panel: Round Robin's Settings > Integrations page for PagerDuty.

Server-rendered HTML (Jinja2, no front-end build). Every form post calls the same service
functions as the JSON API (``workers.connections``), inside one transaction, then redirects
back to ``GET /panel`` (post/redirect/get). See docs/panel.md.

Who is acting and CSRF: ``api_stub.panel.session``; what the page shows:
``api_stub.panel.page``.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api_stub.auth import issue_token, verify_login_token
from api_stub.errors import ApiError, error_response
from api_stub.oauth_browser import remember_login
from api_stub.panel.page import FIELD_ERRORS, ROLE_WORDS, TEMPLATES, page_state
from api_stub.panel.session import (
    CSRF_COOKIE,
    FLASH_COOKIE,
    LOGIN_COOKIE,
    LOGIN_TTL_SECONDS,
    SESSION_ENDED_WORDS,
    check_csrf,
    cookie_secure,
    csrf_token_for,
    current_actor,
    end_session,
    flash,
    login_nonce_for,
    page_response,
    picker_enabled,
    read_form,
    redirect_to_panel,
    session_ended,
    set_identity,
    subject_of,
)
from api_stub.schemas import control_message, has_control_characters
from models import Member, utcnow
from workers.connections import account_change, messages, oauth_login, pending, setup
from workers.core.access import Actor, Missing, ServiceError
from workers.core.db import transaction
from workers.core.ids import parse_uuid
from workers.core.settings import get_settings
from workers.disconnect.request import request_disconnect
from workers.rotations import binding
from workers.rotations.views import rotation_missing
from workers.sync.request import sync_now as request_sync_now

router = APIRouter(prefix="/panel", include_in_schema=False)


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
        secure=cookie_secure(),
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
        redirect: Response = redirect_to_panel()
        set_identity(redirect, token)
        redirect.delete_cookie(LOGIN_COOKIE, path="/panel")
        return redirect
    actor = current_actor(request)
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    ctx = page_state(request, actor)
    ended = session_ended(request, actor)
    if ended:
        ctx["notices"].insert(0, {"kind": "error", "text": SESSION_ENDED_WORDS})
        ctx["session_ended"] = True
    ctx["csrf_token"] = csrf_token_for(nonce, subject_of(actor))
    script_nonce = secrets.token_urlsafe(16)
    ctx["script_nonce"] = script_nonce
    html = TEMPLATES.get_template("panel.html").render(**ctx)
    response = page_response(html, script_nonce, nonce)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path="/panel")
    if ended:
        end_session(response)
    return response


# --- forms --------------------------------------------------------------------------------------
#
# Handlers are async only to read the form; database work (blocking) runs in the thread pool.


class _SessionEnded(Exception):
    """A form posted after the panel session ended (it lasts as long as the token)."""


# Said instead of a CSRF refusal: the form's token was made for the member whose session ended.
# Nothing typed is kept (a key or secret must not travel back into a page or a cookie).
SESSION_ENDED_POST_WORDS = (
    f"{SESSION_ENDED_WORDS} Nothing was saved: anything you typed (such as an API key or a "
    "Client Secret) must be typed again after signing in."
)


def _form_handler(
    handler: Callable[..., Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """A form post after the session ended answers with the panel page saying so (not JSON)."""

    @functools.wraps(handler)
    async def wrapper(*args: object, **kwargs: object) -> Response:
        try:
            return await handler(*args, **kwargs)
        except _SessionEnded:
            response = flash(redirect_to_panel(), "error", SESSION_ENDED_POST_WORDS)
            end_session(response)
            return response

    return wrapper


async def _checked(request: Request) -> tuple[Actor, dict[str, str]]:
    """The form, after the CSRF check, and who is acting (401 if nobody is)."""
    form = await read_form(request)
    actor = await run_in_threadpool(current_actor, request)
    if session_ended(request, actor):
        raise _SessionEnded
    check_csrf(request, form, actor)
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
        return _refused(exc)
    return flash(redirect_to_panel(query), "ok", text)


def _refused(exc: ServiceError) -> Response:
    # A refused field reopens its modal with the error next to it (page.FIELD_ERRORS).
    field = exc.code if exc.code in FIELD_ERRORS else None
    return flash(redirect_to_panel(), "error", exc.message, field=field)


def _sync_requested() -> dict[str, str]:
    # Whole seconds, rounded down: a sync that starts right after still counts.
    return {"sync_requested": str(int(utcnow().timestamp()))}


def _rotation_id(raw: str) -> uuid.UUID:
    rotation_id = parse_uuid(raw)
    if rotation_id is None:
        raise rotation_missing()
    return rotation_id


@router.post("/act-as")
async def act_as(request: Request) -> Response:
    """Local runs only: act as the chosen member (the panel's role picker)."""
    if not picker_enabled():
        raise ApiError(
            403,
            "picker_disabled",
            "The member picker is disabled in production; open the panel with a token.",
        )
    form = await read_form(request)
    actor = await run_in_threadpool(current_actor, request)
    if session_ended(request, actor):
        # A picker rendered before the session ended carries the old member's form token.
        response = flash(redirect_to_panel(), "error", SESSION_ENDED_WORDS)
        end_session(response)
        return response
    check_csrf(request, form, actor)

    def choose() -> tuple[str, str] | None:
        member_id = parse_uuid(form.get("member_id", ""))
        if member_id is None:
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
        return flash(redirect_to_panel(), "error", "Choose a member of a workspace.")
    token, text = chosen
    response = flash(redirect_to_panel(), "ok", text)
    set_identity(response, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form, await run_in_threadpool(current_actor, request))
    response = redirect_to_panel()
    end_session(response)
    return response


@router.post("/api-key")
@_form_handler
async def save_api_key(request: Request) -> Response:
    actor, form = await _checked(request)

    def work(session: Session) -> str:
        done = setup.set_api_key(
            session, actor, form.get("api_key", ""), form.get("region") or "us"
        )
        if done.connection.pending_status is not None:
            return "New API key saved. Checking it with PagerDuty; the current key keeps working."
        return "API key saved. Checking it with PagerDuty..."

    return await _apply(work)


@router.post("/oauth")
@_form_handler
async def start_oauth(request: Request) -> Response:
    actor, form = await _checked(request)

    def run() -> oauth_login.OAuthStart:
        with transaction() as session:
            return oauth_login.start_oauth(
                session,
                actor,
                form.get("client_id", ""),
                form.get("client_secret", ""),
                form.get("region") or "us",
            )

    try:
        start = await run_in_threadpool(run)
    except ServiceError as exc:
        return _refused(exc)
    # Off to PagerDuty's consent page; the callback brings the browser back to /panel. This
    # browser keeps the login, as PagerDuty may send no state back (api_stub.oauth_browser).
    response = RedirectResponse(
        start.authorization_url,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
    remember_login(response, start.state)
    return response


@router.post("/disconnect")
@_form_handler
async def disconnect(request: Request) -> Response:
    actor, _ = await _checked(request)

    def run() -> str:
        with transaction() as session:
            return str(request_disconnect(session, actor).connection.id)

    try:
        connection_id = await run_in_threadpool(run)
    except Missing as exc:
        if exc.code != "not_connected":
            return flash(redirect_to_panel(), "error", exc.message)
        # A second tab, or a double click: the outcome the person wanted is already there.
        return flash(redirect_to_panel(), "ok", "PagerDuty is already disconnected; nothing to do.")
    except ServiceError as exc:
        return flash(redirect_to_panel(), "error", exc.message)
    # The page refreshes while disconnecting, then says how many rotations became Manual.
    return flash(
        redirect_to_panel({"disconnected": connection_id}),
        "ok",
        "Disconnecting from PagerDuty. Bound rotations go back to Manual.",
    )


@router.post("/sync")
@_form_handler
async def sync_now(request: Request) -> Response:
    actor, _ = await _checked(request)

    def work(session: Session) -> str:
        request_sync_now(session, actor)
        return "Sync started. Rotations update in a few seconds."

    return await _apply(work, _sync_requested())


@router.post("/pending/{decision}")
@_form_handler
async def decide_pending(decision: Literal["discard", "confirm"], request: Request) -> Response:
    """Dismiss (or, for another account's key, "Keep <old>"), or "Switch accounts"."""
    actor, _ = await _checked(request)
    decide = account_change.confirm if decision == "confirm" else pending.discard
    return await _apply(lambda s: messages.pending_decided(decision, decide(s, actor)))


@router.post("/rotations/{rotation_id}/bind")
@_form_handler
async def bind_rotation(rotation_id: str, request: Request) -> Response:
    actor, form = await _checked(request)

    def work(session: Session) -> str:
        several = [sid for sid in form.get("schedule_ids", "").split(",") if sid]
        bound = binding.bind_rotation(
            session, actor, _rotation_id(rotation_id), several or form.get("schedule_id", "")
        )
        what = (
            f"{len(several)} PagerDuty schedules" if len(several) > 1 else "its PagerDuty schedule"
        )
        return f"{bound.rotation.name} now follows {what}. Filling it in..."

    return await _apply(work, _sync_requested())


@router.post("/rotations/{rotation_id}/manual")
@_form_handler
async def make_manual(rotation_id: str, request: Request) -> Response:
    actor, _ = await _checked(request)

    def work(session: Session) -> str:
        rotation = binding.unbind_rotation(session, actor, _rotation_id(rotation_id))
        return f"{rotation.name} is Manual again (members and who is on duty are kept)."

    return await _apply(work)

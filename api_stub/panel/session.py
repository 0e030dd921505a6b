"""The panel's session: who is acting (an HttpOnly JWT cookie), CSRF, flash messages.

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
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api_stub.auth import verify_token
from api_stub.errors import ApiError
from workers.core.access import Actor, resolve_actor
from workers.core.db import transaction
from workers.core.settings import get_settings

IDENTITY_COOKIE = "rrpd_panel_session"
CSRF_COOKIE = "rrpd_panel_csrf"
LOGIN_COOKIE = "rrpd_panel_login"
LOGIN_TTL_SECONDS = 600
FLASH_COOKIE = "rrpd_panel_flash"
# "This browser had a panel session": outlives the session cookie (which the browser drops when
# the token expires), so the panel can say the session ended instead of asking "Who are you?".
SIGNED_IN_COOKIE = "rrpd_panel_signed_in"
SIGNED_IN_TTL_SECONDS = 30 * 86400
SESSION_ENDED_WORDS = "Your session ended; sign in again."
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELD = 2048


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


def subject_of(actor: Actor | None) -> str:
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


def check_csrf(request: Request, form: dict[str, str], actor: Actor | None) -> None:
    nonce = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    expected = csrf_token_for(nonce, subject_of(actor)) if nonce else ""
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


def cookie_secure() -> bool:
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


MULTI_FIELD = "schedule_ids"


async def read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "Send the panel's forms as form data.")
    raw = await request.form()
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            out[key] = value[:MAX_FORM_FIELD]
    # The one multi-valued field (the bind form's checkboxes): its values joined by commas,
    # which no PagerDuty id contains.
    several = [v for v in raw.getlist(MULTI_FIELD) if isinstance(v, str)]
    if several:
        out[MULTI_FIELD] = ",".join(several)[:MAX_FORM_FIELD]
    return out


def redirect_to_panel(query: dict[str, str] | None = None) -> RedirectResponse:
    url = "/panel" + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def flash(response: Response, kind: str, text: str, field: str | None = None) -> Response:
    """A one-time message for the next page; ``field``: the service error's code of a refused
    form field, which the page shows next to that field."""
    data = {"kind": kind, "text": text[:500], **({"field": field[:64]} if field else {})}
    response.set_cookie(
        FLASH_COOKIE,
        base64.urlsafe_b64encode(json.dumps(data).encode()).decode(),
        max_age=60,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(),
        path="/panel",
    )
    return response


def read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError, RecursionError):  # a crafted cookie is simply ignored
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("ok", "error"):
        return None
    out = {"kind": data["kind"], "text": str(data.get("text", ""))[:500]}
    if isinstance(data.get("field"), str):
        out["field"] = data["field"][:64]
    return out


def set_identity(response: Response, token: str) -> None:
    response.set_cookie(
        IDENTITY_COOKIE,
        token,
        max_age=get_settings().api_jwt_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(),
        path="/",
    )
    response.set_cookie(
        SIGNED_IN_COOKIE,
        "1",
        max_age=SIGNED_IN_TTL_SECONDS,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(),
        path="/panel",
    )


def session_ended(request: Request, actor: Actor | None) -> bool:
    """This browser had a panel session and it is no longer valid (expired, most often)."""
    return actor is None and bool(request.cookies.get(SIGNED_IN_COOKIE))


def end_session(response: Response) -> None:
    """Forget the session, so that "your session ended" is said once."""
    response.delete_cookie(IDENTITY_COOKIE, path="/")
    response.delete_cookie(SIGNED_IN_COOKIE, path="/panel")


def page_response(html: str, script_nonce: str, csrf_nonce: str, status: int = 200) -> HTMLResponse:
    """A panel page with the headers every page carries (no caching, a CSP allowing only this
    page's script nonce, no framing) and the CSRF cookie its forms' tokens are made from."""
    response = HTMLResponse(
        html,
        status_code=status,
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
        csrf_nonce,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(),
        path="/panel",
    )
    return response

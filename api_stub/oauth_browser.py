"""The cookie that binds an OAuth login to the browser that started it.

PagerDuty documents no ``state`` in its redirect back to us (pagerduty-facts.md, OAuth). So when
a browser starts a login (the panel's form, or the JSON API called from the browser) it also
gets the login's state in an HttpOnly cookie sent only to the callback; a callback without
``state`` takes its login from that cookie (``workers.connections.oauth_login``). Another
browser has no cookie, so a forged state-less callback finds no login; and a code injected into
this browser's login fails at the exchange, bound as it is to that login's PKCE verifier.

``SameSite=Lax``: the callback is a top-level GET navigation from PagerDuty's site, which Lax
cookies accompany and cross-site subrequests do not.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request, Response

from workers.core.settings import get_settings

LOGIN_COOKIE = "rrpd_oauth_login"


def _callback_path() -> str:
    # Only the callback ever reads it (RRPD_PUBLIC_URL may carry a path prefix).
    return urlsplit(get_settings().oauth_redirect_uri).path or "/"


def _secure() -> bool:
    return get_settings().public_url.startswith("https://")


def remember_login(response: Response, state: str) -> None:
    """Set on the response that sends the browser to PagerDuty (or hands it the URL)."""
    response.set_cookie(
        LOGIN_COOKIE,
        state,
        max_age=get_settings().oauth_state_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=_secure(),
        path=_callback_path(),
    )


def remembered_login(request: Request) -> str | None:
    return request.cookies.get(LOGIN_COOKIE) or None


def forget_login(response: Response) -> None:
    response.delete_cookie(
        LOGIN_COOKIE, path=_callback_path(), secure=_secure(), httponly=True, samesite="lax"
    )

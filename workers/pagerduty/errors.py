"""Typed errors for everything that talks to PagerDuty.

Callers branch on the class, never on message text. Messages are plain words meant for logs and
for the admin page, and they never contain a secret: every message that could echo text from
PagerDuty passes through :func:`redact` with the secrets the caller knows about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import httpx

# Long bodies are cut so an HTML error page can't flood a log line.
_MAX_DETAIL_CHARS = 300
_SCOPE_RE = re.compile(r"\b[a-z_]+\.(?:read|write)\b")

# The scope each endpoint family needs under Scoped OAuth (from PagerDuty's schema).
ENDPOINT_SCOPES: dict[str, str] = {
    "/users": "users.read",
    "/schedules": "schedules.read",
    "/v3/schedules": "schedules.read",
    "/oncalls": "oncalls.read",
    "/abilities": "abilities.read",
}


class PagerDutyError(Exception):
    """Base class. ``retryable`` tells a task whether trying again later can help."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
        endpoint: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.endpoint = endpoint
        self.details = details

    def __str__(self) -> str:
        where = f" [{self.endpoint}]" if self.endpoint else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.message}{status}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"endpoint={self.endpoint!r}, message={self.message!r})"
        )


class InvalidCredentials(PagerDutyError):
    """401: the key or token is wrong, revoked or expired. Ask the admin to reconnect
    (or, for OAuth, refresh once and retry)."""


class NoApiAccess(PagerDutyError):
    """402: the account's plan has no REST API access. Nothing to retry; tell the admin."""


class Forbidden(PagerDutyError):
    """403: the credential is valid but lacks a scope or a permission.

    ``missing`` lists the scopes PagerDuty named (or the one the endpoint needs, when it named
    none); empty when the cause is a role permission rather than a scope.
    """

    def __init__(self, message: str, *, missing: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing = missing


class NotFound(PagerDutyError):
    """404: the object is gone (deleted schedule, user). Drop the binding, don't retry."""


class BadRequest(PagerDutyError):
    """400: we sent something PagerDuty refuses. Retrying the same request won't help."""


class RateLimited(PagerDutyError):
    """429 after our retry budget ran out. Retry the task after ``reset_after`` seconds
    (``None``: PagerDuty sent no hint; back off on your own schedule)."""

    retryable = True

    def __init__(self, message: str, *, reset_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_after = reset_after


class Transient(PagerDutyError):
    """5xx, timeout, connection failure or a body that doesn't parse: retry the task later."""

    retryable = True


class PaginationLimit(PagerDutyError):
    """PagerDuty serves at most 10,000 records of one list; the list is longer.

    Raised instead of returning a silently truncated list. ``fetched`` says how many records
    were read before the cap.
    """

    def __init__(self, message: str, *, fetched: int = 0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fetched = fetched


class OAuthError(PagerDutyError):
    """The token endpoint refused a request (RFC 6749 section 5.2). ``code`` is the RFC error."""


class InvalidGrant(OAuthError):
    """The code or refresh token is invalid, expired, already used or revoked.

    For a refresh: the connection is dead (PagerDuty rotates refresh tokens on every use, so
    a reused one is refused); ask the admin to reconnect. Never retry with the same token.
    """


class InvalidClient(OAuthError):
    """The OAuth app's client id or secret is wrong: an operator problem, not the customer's."""


class IdTokenInvalid(PagerDutyError):
    """The id_token failed verification (signature, expiry, audience or missing claims)."""


class UnknownRegion(PagerDutyError):
    """The account's API host is neither our configured US nor EU URL: refuse to connect."""


# --- helpers ------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every known secret in ``text``; short strings are left alone (false matches)."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


def parse_error_body(
    response: httpx.Response,
) -> tuple[int | str | None, str | None, tuple[str, ...]]:
    """Return ``(code, message, details)`` from any error body, never raising.

    Handles PagerDuty's ``{"error": {"message", "code", "errors": [...] | {...}}}``, the
    ``/users/me`` variant where ``error`` is a plain string, RFC 6749 ``{"error": "...",
    "error_description": "..."}`` and bodies that are not JSON at all.
    """
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None, None, ()
    if not isinstance(body, dict):
        return None, None, ()
    error = body.get("error", body)
    code: int | str | None = None
    message: str | None = None
    details: list[str] = []
    if isinstance(error, str):
        code_candidate = body.get("error_description")
        message = error if code_candidate is None else str(code_candidate)
        code = error if code_candidate is not None else None
    elif isinstance(error, dict):
        raw_code = error.get("code")
        if isinstance(raw_code, int | str) and not isinstance(raw_code, bool):
            code = raw_code
        raw_message = error.get("message")
        if isinstance(raw_message, str):
            message = raw_message
        raw_errors = error.get("errors")
        if isinstance(raw_errors, list):
            details = [str(item) for item in raw_errors]
        elif isinstance(raw_errors, dict):
            # v3 endpoints: field path -> list of messages.
            for field, messages in raw_errors.items():
                items = messages if isinstance(messages, list) else [messages]
                details.extend(f"{field}: {item}" for item in items)
    return code, message, tuple(details)


_PLAIN: dict[int, tuple[type[PagerDutyError], str]] = {
    400: (BadRequest, "PagerDuty refused the request as invalid"),
    401: (
        InvalidCredentials,
        "PagerDuty rejected the credential: it is invalid, revoked or expired",
    ),
    402: (NoApiAccess, "The PagerDuty account's plan does not include REST API access"),
    403: (Forbidden, "The credential is valid but not allowed to read this"),
    404: (NotFound, "PagerDuty has no such object (deleted, or not visible to this credential)"),
    429: (RateLimited, "PagerDuty's rate limit for this credential was exceeded"),
}


def reset_after_from_headers(headers: httpx.Headers) -> float | None:
    """Seconds until PagerDuty's rate-limit window resets, or None when it didn't say."""
    for name in ("ratelimit-reset", "retry-after"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.strip())
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


def required_scope_for(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    path = endpoint.split(" ", 1)[-1]
    for prefix in sorted(ENDPOINT_SCOPES, key=len, reverse=True):
        if path == prefix or path.startswith(prefix + "/"):
            return ENDPOINT_SCOPES[prefix]
    return None


def error_from_response(
    response: httpx.Response, *, endpoint: str, secrets: Iterable[str | None] = ()
) -> PagerDutyError:
    """Map a non-2xx response to the error class a caller acts on."""
    secrets = tuple(secrets)
    status = response.status_code
    code, pd_message, details = parse_error_body(response)
    details = tuple(_clip(redact(d, secrets)) for d in details)
    if status in _PLAIN:
        cls, plain = _PLAIN[status]
    elif status >= 500:
        cls, plain = Transient, "PagerDuty had a server error"
    else:
        cls, plain = PagerDutyError, f"PagerDuty answered with unexpected HTTP status {status}"

    message = plain
    if pd_message:
        message += f"; PagerDuty said: {_clip(redact(pd_message, secrets))}"
        if code is not None:
            message += f" (code {code})"
    elif response.content and code is None and status not in (429,):
        message += " (the error body was not PagerDuty's JSON)"
    if details:
        message += " — " + "; ".join(details)

    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "endpoint": endpoint,
        "details": details,
    }
    if cls is Forbidden:
        text = " ".join([pd_message or "", *details])
        named = tuple(dict.fromkeys(_SCOPE_RE.findall(text)))
        needed = required_scope_for(endpoint)
        missing = named or ((needed,) if needed else ())
        if missing:
            message += f". It may be missing: {', '.join(missing)}"
        return Forbidden(message, missing=missing, **kwargs)
    if cls is RateLimited:
        return RateLimited(
            message, reset_after=reset_after_from_headers(response.headers), **kwargs
        )
    return cls(message, **kwargs)

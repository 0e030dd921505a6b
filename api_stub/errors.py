"""One error shape for every failure: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.core.access import ServiceError
from workers.core.outages import DATABASE_OUTAGE_ERRORS, REDIS_OUTAGE_ERRORS, outage_behind
from workers.core.settings import get_settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    431: "headers_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "service_unavailable",
}

# Seconds a client should wait before trying again while PostgreSQL or Redis is down: a
# restart or failover takes seconds, and a client retrying at once only adds load.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_MESSAGES = {
    "database": "Round Robin's database is not answering right now. Please try again in a few "
    "seconds.",
    "broker": "Round Robin's task queue is not answering right now. Please try again in a few "
    "seconds.",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def unavailable_response(dependency: str) -> JSONResponse:
    """503 with ``Retry-After``: a dependency is down, the request itself was fine."""
    return error_response(
        503,
        "service_unavailable",
        UNAVAILABLE_MESSAGES[dependency],
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        details=[{"dependency": dependency}],
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    # Only the leading source is dropped: a parameter may itself be called "query".
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Field and message only: pydantic's ``input`` could hold a secret, so it never leaves."""
    out = []
    for e in errors:
        msg = str(e.get("msg", "invalid"))
        ctx = e.get("ctx") or {}
        if isinstance(ctx.get("error"), ValueError):
            msg = str(ctx["error"])
        msg = msg.removeprefix("Value error, ")
        out.append({"field": _field(e.get("loc", ())), "message": msg})
    return out


def _summary(details: list[dict[str, Any]]) -> str:
    return "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, headers=exc.headers, details=exc.details
        )

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "No such endpoint."
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        return error_response(422, "invalid_request", _summary(details), details=details)

    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        dependency = outage_behind(exc)
        if dependency is not None:
            log.warning("%s unavailable in API request: %s", dependency, type(exc).__name__)
            return unavailable_response(dependency)
        log.error("unhandled error in API request: %s", type(exc).__name__)
        return error_response(500, "internal_error", "Something went wrong on our side.")

    # A dependency outage is not our bug: 503 with a retry hint, one warning line, no traceback.
    # Starlette picks a handler by the exception's class hierarchy, so the bases are enough.
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        if outage_behind(exc) is None:
            # The driver's class, but a statement's error (a bug of ours): not a 503.
            return await _unexpected(request, exc)
        log.warning("database unavailable in API request: %s", type(exc).__name__)
        return unavailable_response("database")

    async def _broker_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable in API request: %s", type(exc).__name__)
        return unavailable_response("broker")

    async def _maybe_down(request: Request, exc: Exception) -> JSONResponse:
        # e.g. Celery's result consumer giving up on Redis (a RuntimeError raised from the
        # ConnectionError) when a task is published; anything else is a bug, handled below.
        dependency = outage_behind(exc)
        if dependency is None:
            raise exc
        log.warning("%s unavailable in API request: %s", dependency, type(exc).__name__)
        return unavailable_response(dependency)

    for database_error in DATABASE_OUTAGE_ERRORS:
        app.add_exception_handler(database_error, _database_down)
    for redis_error in REDIS_OUTAGE_ERRORS:
        app.add_exception_handler(redis_error, _broker_down)
    app.add_exception_handler(RuntimeError, _maybe_down)

    app.add_exception_handler(Exception, _unexpected)


# --- request bodies -----------------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json(request: Request, model: type[M]) -> M:
    """Check type and size, parse and validate a JSON body. Order: 415, 413, 422."""
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = get_settings().api_max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413, "payload_too_large", f"The request body is larger than {limit} bytes."
            )
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "invalid_json", "The request body is not valid JSON.") from None
    except RecursionError:
        # "[" * 5000 fits in the size limit but exhausts the parser's recursion limit.
        raise ApiError(
            422, "invalid_json", "The request body is nested too deeply to be valid JSON here."
        ) from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        raise ApiError(422, "invalid_request", _summary(details), details=details) from None


class _BodyTooLarge(Exception):
    """Raised from ``receive`` the moment a body crosses the limit."""


class BodySizeLimit:
    """Bound what a request can make us hold: headers (431) and bodies (413).

    - Headers (request target included) over ``RRPD_API_MAX_HEADER_BYTES``: 431. h11 already
      refuses headers that stay incomplete past the limit (``api_stub.server``); this also
      catches a complete oversized block that arrived in one read.
    - A declared Content-Length over ``RRPD_API_MAX_BODY_BYTES``: 413 before any handler runs.
    - Every body, declared or chunked, API or panel form, is counted as it streams in: the
      moment it crosses the limit the request ends with 413, before the rest is read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        limit = settings.api_max_body_bytes
        header_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in scope.get("headers", []):
            header_bytes += len(name) + len(value) + 4
        if header_bytes > settings.api_max_header_bytes:
            await error_response(
                431,
                "headers_too_large",
                f"The request's headers are larger than {settings.api_max_header_bytes} bytes.",
                headers={"Connection": "close"},
            )(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await error_response(400, "bad_request", "Content-Length is not a number.")(
                        scope, receive, send
                    )
                    return
                if length > limit:
                    await _too_large(limit)(scope, receive, send)
                    return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if started:  # nothing sensible left to say; the server closes the connection
                raise
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    # Connection: close, so the server stops reading the rest of the body.
    return error_response(
        413,
        "payload_too_large",
        f"The request body is larger than {limit} bytes.",
        headers={"Connection": "close"},
    )

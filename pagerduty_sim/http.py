"""Small HTTP helpers shared by the REST, identity and control surfaces."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

JSON_CT = "application/json; charset=utf-8"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    hdrs = {"content-type": JSON_CT}
    if headers:
        hdrs.update(headers)
    return Response(body, status_code=status, headers=hdrs)


class ApiError(Exception):
    """A PagerDuty-shaped REST error: {"error": {"message", "code", "errors"?}}."""

    def __init__(
        self,
        status: int,
        message: str,
        code: int | None = None,
        errors: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors
        self.extra = extra or {}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        err: dict[str, Any] = {"message": self.message}
        if self.code is not None:
            err["code"] = self.code
        if self.errors:
            err["errors"] = self.errors
        err.update(self.extra)
        return json_response({"error": err}, self.status, headers)


def invalid_input(detail: str) -> ApiError:
    return ApiError(400, "Invalid Input Provided", 2001, [detail])


def base_url(request: Request) -> str:
    """The server's base URL as the client addressed it (host header), e.g. http://127.0.0.1:9."""
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.url.scheme}://{host}"


def fmt_time(dt: datetime, tz: ZoneInfo | None = None) -> str:
    """ISO 8601 to the second like PagerDuty: `Z` for UTC, numeric offset otherwise."""
    local = dt.astimezone(tz or UTC).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text

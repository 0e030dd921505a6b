"""The HTTP protocol ``rrpd api`` serves with: uvicorn's h11 implementation, bounded.

uvicorn's default (httptools) buffers a request's headers without any limit: a 10 MB header is
read whole. h11 refuses a request whose headers are still incomplete after
``h11_max_incomplete_event_size`` bytes (``RRPD_API_MAX_HEADER_BYTES``); this subclass only
makes that refusal, and any other malformed request, answer in the API's JSON error shape
(uvicorn's own answer is a plain-text 400).
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_MAX_HEADER_BYTES = 16_384


class _Connection(h11.Connection):
    """Remembers the protocol error, whose status hint (431 or 400) uvicorn drops."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class BoundedH11Protocol(H11Protocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limit = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=limit)

    def send_400_response(self, msg: str) -> None:
        error = getattr(self.conn, "last_error", None)
        if error is not None and error.error_status_hint == 431:
            status, code = 431, "headers_too_large"
            message = "The request's headers are too large."
        else:
            status, code, message = 400, "bad_request", "The request is not valid HTTP."
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

"""The real ``rrpd api`` process, over a real socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import free_port, rrpd_process

pytestmark = pytest.mark.integration


def _wait_until_up(base: str, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rrpd api exited early; see {proc.log_path}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"rrpd api did not start; see {proc.log_path}")


def test_real_api_process(world) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with rrpd_process("api", "api", "--port", str(port)) as proc:
        _wait_until_up(base, proc)
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {
                "configuration": "ok",
                "database": "ok",
                "broker": "ok",
            }

            url = f"/v1/workspaces/{world.ws.id}/pagerduty"
            r = http.get(url)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthenticated"

            r = http.get(url, headers=world.headers(world.member))
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "not_connected"

            r = http.get("/v1/nope")
            assert r.status_code == 404
            assert r.json() == {"error": {"code": "not_found", "message": "No such endpoint."}}
            assert "paths" in http.get("/openapi.json").json()


# --- bounded headers and bodies, over a raw socket ----------------------------------------------


@pytest.fixture(scope="module")
def api_port(database_url) -> Iterator[int]:
    port = free_port()
    with rrpd_process("api-limits", "api", "--port", str(port)) as proc:
        _wait_until_up(f"http://127.0.0.1:{port}", proc)
        yield port


def _exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (maybe an unfinished request) and read one response without sending more.

    A server that waits for the rest of the request never answers: the read times out.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without a response: {raw!r}"
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(status_line.split()[1]), headers, body


def _error_code(body: bytes) -> str:
    data = json.loads(body)
    assert set(data) == {"error"}
    assert data["error"]["message"]
    return data["error"]["code"]


def test_oversized_headers_are_refused_before_they_are_held(api_port: int) -> None:
    # Headers still incomplete after the limit (a 10 MB header on its way): refused at once.
    status, headers, body = _exchange(
        api_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 65536
    )
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert _error_code(body) == "headers_too_large"
    # A complete header block over the limit, arriving in one piece, is refused too.
    status, _, body = _exchange(
        api_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    )
    assert (status, _error_code(body)) == (431, "headers_too_large")
    # Normal requests are unaffected.
    status, _, body = _exchange(api_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def _chunked(method: str, path: str, content_type: str, extra: str = "") -> bytes:
    from workers.core.settings import get_settings

    limit = get_settings().api_max_body_bytes
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Transfer-Encoding: chunked\r\n{extra}\r\n"
    ).encode()
    chunk = b"a=" + b"x" * 4094
    # Just over the limit, and no final chunk: the rest of a 40 MB body is "still coming".
    return head + b"".join(b"1000\r\n" + chunk + b"\r\n" for _ in range(limit // 4096 + 2))


def test_a_chunked_panel_form_over_the_limit_is_refused_once_the_limit_is_crossed(
    api_port: int,
) -> None:
    status, headers, body = _exchange(
        api_port, _chunked("POST", "/panel/api-key", "application/x-www-form-urlencoded")
    )
    assert status == 413
    assert _error_code(body) == "payload_too_large"
    assert headers.get("connection") == "close"


def test_a_chunked_json_body_over_the_limit_is_refused_once_the_limit_is_crossed(
    api_port: int, world
) -> None:
    auth = world.headers(world.admin)["Authorization"]
    status, _, body = _exchange(
        api_port,
        _chunked(
            "PUT",
            f"/v1/workspaces/{world.ws.id}/pagerduty/api-key",
            "application/json",
            f"Authorization: {auth}\r\n",
        ),
    )
    assert (status, _error_code(body)) == (413, "payload_too_large")

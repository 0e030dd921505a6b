"""The real ``rrpd api`` process, over a real socket."""

from __future__ import annotations

import time

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

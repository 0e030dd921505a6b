"""The real ``rrpd api`` while its PostgreSQL is down: 503 with a retry hint, never 500.

The API runs against a PostgreSQL of this test's own, stopped in the middle of the test the way
a crash or a restart stops it (connections refused, the pool's connections dead), then started
again on the same port with its data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api_stub.auth import issue_token
from models import Role
from tests.support import factories
from tests.support.private_services import PrivatePostgres, private_postgres
from tests.support.processes import free_port, rrpd_process

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


@dataclass
class Outage:
    base: str
    pg: PrivatePostgres
    workspace_id: uuid.UUID
    headers: dict[str, str]
    log_path: Any


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    from workers.core.db import get_engine, session_factory
    from workers.core.migrate import upgrade

    with private_postgres() as pg:
        url = pg.url()
        upgrade(url)
        with session_factory(url)() as session:
            ws = factories.workspace(session, "Outage Inc")
            admin = factories.member(session, ws, "admin@outage.test", Role.ADMIN)
            session.commit()
            ws_id, admin_id = ws.id, admin.id
        token = issue_token(ws_id, admin_id, Role.ADMIN.value)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"RRPD_DATABASE_URL": url, "RRPD_PUBLIC_URL": base}
        with rrpd_process("api-outage", "api", "--port", str(port), env=env) as proc:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "API exited before it started"
                assert time.monotonic() < deadline, "API did not start"
                time.sleep(0.1)
            yield Outage(base, pg, ws_id, {"Authorization": f"Bearer {token}"}, proc.log_path)
        get_engine(url).dispose()


def _v1_operations(http: httpx.Client, workspace_id: uuid.UUID) -> list[tuple[str, str]]:
    """Every /v1 operation the API documents, with its path parameters filled in."""
    ops = []
    for path, methods in http.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/v1/"):
            continue
        concrete = (
            path.replace("{workspace_id}", str(workspace_id))
            .replace("{rotation_id}", str(uuid.uuid4()))
            .replace("{task_id}", str(uuid.uuid4()))
        )
        assert "{" not in concrete, f"a path parameter this test does not fill: {path}"
        ops += [(method.upper(), concrete) for method in methods]
    return ops


def _assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("retry-after", "").isdigit(), f"{what}: no Retry-After"
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "service_unavailable", what
    assert "database" in error["message"], what
    assert "try again" in error["message"], what
    assert error["details"] == [{"dependency": "database"}], what


def test_every_route_answers_503_with_retry_after_while_postgres_is_down(outage: Outage) -> None:
    status_url = f"/v1/workspaces/{outage.workspace_id}/pagerduty"
    with httpx.Client(base_url=outage.base, timeout=15, headers=outage.headers) as http:
        assert http.get(status_url).status_code == 200  # the pool holds a live connection now
        operations = _v1_operations(http, outage.workspace_id)
        assert len(operations) >= 10

        outage.pg.stop("immediate")
        try:
            for method, path in operations:
                body = {"api_key": "u+" + "k" * 20, "region": "us"} if method != "GET" else None
                r = http.request(method, path, json=body, params={"state": "s", "code": "c"})
                _assert_unavailable(r, f"{method} {path}")

            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers.get("retry-after", "").isdigit()
            checks = ready.json()["checks"]
            assert checks["database"].startswith("unavailable"), checks
            assert checks["broker"] == "ok"
            assert checks["configuration"] == "ok"
            assert http.get("/healthz").json() == {"status": "ok"}
        finally:
            outage.pg.start()

        # Once PostgreSQL is back, the pool replaces its dead connections by itself.
        back = time.monotonic()
        while (r := http.get(status_url)).status_code != 200:
            _assert_unavailable(r, "status while PostgreSQL starts")
            assert time.monotonic() - back < 15, "the API did not recover within 15 s"
            time.sleep(0.1)
        print(f"api: PostgreSQL back -> first 200 in {time.monotonic() - back:.1f} s")
        assert r.json()["status"] == "not_connected"
        assert http.get("/readyz").status_code == 200

    log = outage.log_path.read_text()
    assert "unhandled error in API request" not in log
    assert "database unavailable in API request" in log

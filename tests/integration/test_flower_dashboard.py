"""Flower against a real run: ``rrpd flower`` next to live workers, read through its HTTP API.

Tasks are sent the way the system sends them (``enqueue`` after commit, ``send_task``), then
Flower's task list, task info, workers, queue lengths and Prometheus metrics are read with basic
auth; without it every one of them is refused. No secret (the API key, its ciphertext, the
Flower password itself) may appear in anything Flower serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session

from models import PagerDutyConnection
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories, processes
from tests.support.secrets import stored_ciphertext
from tests.support.stack import demo_api_key
from workers.core.db import transaction
from workers.tasking.contract import VALIDATE_API_KEY
from workers.tasking.enqueue import enqueue

pytestmark = pytest.mark.integration

FLOWER_AUTH = ("ops", "flower-test-password-3f9a")


@pytest.fixture(scope="module")
def flower_url(database_url: str) -> Iterator[str]:
    port = processes.free_port()
    env = {"RRPD_FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}
    with processes.rrpd_process("flower", "flower", "--port", str(port), env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, f"Flower exited; see {proc.log_path}"
            assert time.monotonic() < deadline, f"Flower did not start; see {proc.log_path}"
            time.sleep(0.2)
        # The password went through the environment, not the command line (visible in ps).
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert FLOWER_AUTH[1].encode() not in f.read()
        yield url


def _poll(fetch, ok, timeout: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value!r}"[:2000]
        time.sleep(0.5)


def test_flower_shows_tasks_workers_queues_and_metrics_without_secrets(
    flower_url: str, live_workers, sim: SimulatorHandle, session: Session
) -> None:
    auth = httpx.BasicAuth(*FLOWER_AUTH)
    http = httpx.Client(base_url=flower_url, auth=auth, timeout=10)

    # Workers have announced themselves (heartbeats) and answer Flower's inspect calls.
    workers = _poll(
        lambda: http.get("/api/workers", params={"refresh": "true"}).json(),
        lambda w: (
            any(name.startswith("rrpd-interactive@") for name in w)
            and any(name.startswith("rrpd-sync@") for name in w)
        ),
        what="both workers in /api/workers",
    )
    interactive = next(v for k, v in workers.items() if k.startswith("rrpd-interactive@"))
    assert [q["name"] for q in interactive["active_queues"]] == ["interactive"]

    # A connection with a real (simulator) key, validated through the system's own enqueue.
    api_key = demo_api_key(sim)
    ws = factories.workspace(session, "Flower Co")
    conn = factories.api_key_connection(session, ws, api_key=api_key)
    conn.status = "validating"
    session.commit()
    ciphertext = stored_ciphertext(session, conn, "api_key")
    with transaction() as tx:
        validate_id = enqueue(
            tx, VALIDATE_API_KEY, workspace_id=ws.id, connection_id=conn.id, generation=1
        )
    from workers.tasking.app import app

    ping = app.send_task("rrpd.ping", kwargs={"payload": "flower-check"})
    assert ping.get(timeout=30) == {"reply": "flower-check"}

    tasks = _poll(
        lambda: http.get("/api/tasks").json(),
        lambda t: (
            t.get(validate_id, {}).get("state") == "SUCCESS"
            and t.get(ping.id, {}).get("state") == "SUCCESS"
        ),
        what="both tasks succeeded in /api/tasks",
    )
    validate = tasks[validate_id]
    assert validate["name"] == "pagerduty.validate_api_key"
    assert validate["args"] == "()"
    # Readable keyword arguments: ids only (what the sender put in kwargsrepr).
    assert validate["kwargs"] == repr({"connection_id": str(conn.id), "generation": 1})
    assert validate["worker"].startswith("rrpd-interactive@")
    assert "'outcome': 'connected'" in validate["result"]
    assert tasks[ping.id]["name"] == "rrpd.ping"
    assert tasks[ping.id]["kwargs"] == "{'payload': 'flower-check'}"

    info = http.get(f"/api/task/info/{validate_id}").json()
    assert info["kwargs"] == validate["kwargs"]

    session.expire_all()
    assert session.get(PagerDutyConnection, conn.id).status == "connected"

    # Queue lengths: read from Redis with our key prefix (no --broker-api needed for Redis).
    queues = http.get("/api/queues/length").json()["active_queues"]
    assert {q["name"] for q in queues} == {"interactive", "sync", "schedule"}
    assert all(isinstance(q["messages"], int) for q in queues)
    broker_page = http.get("/broker")
    assert broker_page.status_code == 200
    assert "interactive" in broker_page.text

    metrics = _poll(
        lambda: http.get("/metrics").text,
        lambda m: 'task="pagerduty.validate_api_key"' in m,
        what="validate_api_key in /metrics",
    )
    assert "flower_events_total" in metrics
    assert "flower_worker_online" in metrics

    # Nothing Flower serves holds a secret: not the key, not its ciphertext, not the password.
    served = [
        http.get("/api/tasks").text,
        http.get(f"/api/task/info/{validate_id}").text,
        http.get("/api/workers").text,
        http.get("/api/queues/length").text,
        metrics,
        http.get("/tasks").text,
        http.get(f"/task/{validate_id}").text,
    ]
    for body in served:
        for secret in (api_key, ciphertext, FLOWER_AUTH[1]):
            assert secret not in body


@pytest.mark.parametrize(
    "path", ["/api/tasks", "/api/workers", "/api/queues/length", "/metrics", "/tasks", "/"]
)
def test_flower_refuses_without_the_operators_credential(flower_url: str, path: str) -> None:
    anonymous = httpx.get(f"{flower_url}{path}", timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{flower_url}{path}", auth=("ops", "wrong"), timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(f"{flower_url}/healthcheck", timeout=10).status_code == 200

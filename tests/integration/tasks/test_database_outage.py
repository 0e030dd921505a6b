"""A key check in flight while PostgreSQL goes down and comes back.

Issue 13: 7 of 15 PostgreSQL restarts during a connect lost it. ``validate_api_key`` retries
rate limits and PagerDuty errors only; an ``OperationalError`` fails the task, its
``on_failure`` → ``give_up`` fails the same way against the same dead database, the message is
acknowledged (``task_acks_on_failure``) and the connection stays ``validating`` until the
10-minute sweep, which then blames PagerDuty. What the admin must see instead: the connection
ends ``connected`` once PostgreSQL is back (or with an error that says what happened).

The worker and this test share a PostgreSQL of the test's own; the worker has a broker
namespace of its own on the shared Redis, so it is the one that gets the task.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from models import ConnectionStatus, PagerDutyConnection, Role
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories, processes
from tests.support.private_services import PrivatePostgres, private_postgres
from tests.support.stack import demo_api_key

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

USERS = "/users"


@dataclass
class Stack:
    pg: PrivatePostgres
    url: str
    client: Any
    worker: Any


@pytest.fixture
def stack(sim: SimulatorHandle) -> Iterator[Stack]:
    from workers.core.db import get_engine
    from workers.core.migrate import upgrade

    with private_postgres() as pg:
        url = pg.url()
        upgrade(url)
        env = {
            "RRPD_DATABASE_URL": url,
            "RRPD_PAGERDUTY_API_URL": sim.base_url,
            "RRPD_PAGERDUTY_EU_API_URL": sim.eu_base_url,
            "RRPD_PAGERDUTY_IDENTITY_URL": sim.identity_url,
        }
        with processes.isolated_worker("interactive", concurrency=1, env=env) as (proc, client):
            yield Stack(pg, url, client, proc)
        get_engine(url).dispose()


def _validating_connection(stack: Stack, sim: SimulatorHandle) -> tuple[uuid.UUID, int]:
    from workers.core.db import session_factory

    with session_factory(stack.url)() as session:
        ws = factories.workspace(session)
        admin = factories.member(session, ws, role=Role.ADMIN)
        conn = factories.api_key_connection(
            session, ws, api_key=demo_api_key(sim), status=ConnectionStatus.VALIDATING, by=admin
        )
        session.commit()
        return conn.id, conn.generation


def _users_requests(sim: SimulatorHandle) -> int:
    return int(sim.control.get("/stats").json()["by_path"].get(USERS, 0))


def _status(stack: Stack, cid: uuid.UUID) -> PagerDutyConnection:
    from workers.core.db import session_factory

    with session_factory(stack.url)() as session:
        conn = session.get(PagerDutyConnection, cid)
        assert conn is not None
        session.expunge(conn)
        return conn


def _ended(stack: Stack, cid: uuid.UUID, timeout: float) -> PagerDutyConnection:
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            conn = _status(stack, cid)
            if conn.status != ConnectionStatus.VALIDATING.value:
                print(f"PostgreSQL back -> {conn.status} in {time.monotonic() - started:.1f} s")
                return conn
        except Exception:  # noqa: S110 - PostgreSQL may still be starting
            pass
        assert time.monotonic() < deadline, f"still validating {timeout:.0f} s after PostgreSQL"
        time.sleep(0.2)


def _assert_truthful(conn: PagerDutyConnection) -> None:
    # The key is the simulator's valid demo key: connected is the only right outcome, unless
    # the words say the database was the problem. Never "could not reach PagerDuty".
    if conn.status != ConnectionStatus.CONNECTED.value:
        assert conn.status == ConnectionStatus.INVALID.value
        assert "PagerDuty" not in (conn.last_error or ""), conn.last_error
        assert "database" in (conn.last_error or ""), conn.last_error


def test_postgres_down_while_the_check_waits_on_pagerduty(
    stack: Stack, sim: SimulatorHandle
) -> None:
    """PostgreSQL dies while the task is out asking PagerDuty; the outcome cannot be written."""
    cid, generation = _validating_connection(stack, sim)
    sim.control.post(
        "/faults",
        json={"kind": "latency", "path_prefix": USERS, "latency_ms": 2000, "times": 1},
    ).raise_for_status()
    before = _users_requests(sim)
    stack.client.send_task(
        "pagerduty.validate_api_key",
        kwargs={"connection_id": str(cid), "generation": generation},
    )
    deadline = time.monotonic() + 30
    while _users_requests(sim) == before:
        assert time.monotonic() < deadline, "the worker never asked PagerDuty"
        time.sleep(0.02)
    stack.pg.stop("immediate")
    time.sleep(6)  # PagerDuty answers after 2 s: the write fails, and so would give_up's
    assert stack.worker.poll() is None
    stack.pg.start()
    _assert_truthful(_ended(stack, cid, timeout=20))


def test_postgres_down_when_the_check_starts(stack: Stack, sim: SimulatorHandle) -> None:
    """The message is delivered while PostgreSQL is down: the task cannot even read the row."""
    cid, generation = _validating_connection(stack, sim)
    stack.pg.stop("immediate")
    stack.client.send_task(
        "pagerduty.validate_api_key",
        kwargs={"connection_id": str(cid), "generation": generation},
    )
    time.sleep(5)
    assert stack.worker.poll() is None
    stack.pg.start()
    _assert_truthful(_ended(stack, cid, timeout=20))

"""A real ``rrpd worker`` on a Redis of the test's own, killed and started again under it.

Issue 13 measured the sync worker exiting in 2 of ~13 Redis outages: those where it held a
message (an ETA sync, a retry countdown, a late-acked task in flight) when the connection
dropped (kombu's ``restore_unacked``: ``AttributeError: 'NoneType' object has no attribute
'hostname'``, exit status 0). Holding one is what these tests arrange on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support.private_services import PrivateRedis, private_redis
from tests.support.processes import rrpd_process

pytestmark = pytest.mark.integration


def _prefix() -> str:
    from tests.conftest import TEST_ENV

    return TEST_ENV["RRPD_REDIS_KEY_PREFIX"]


def _client(server: PrivateRedis) -> Celery:
    client = Celery("rrpd-outage-client")
    client.config_from_object("celeryconfig")
    client.conf.broker_url = f"{server.url}/0"
    client.conf.result_backend = f"{server.url}/1"
    return client


@contextmanager
def _worker(server: PrivateRedis) -> Iterator[tuple[Any, Celery]]:
    env = {
        "RRPD_BROKER_URL": f"{server.url}/0",
        "RRPD_RESULT_BACKEND": f"{server.url}/1",
        "RRPD_REDBEAT_URL": f"{server.url}/0",
    }
    client = _client(server)
    with rrpd_process(
        "worker-redis-outage", "worker", "--queues", "interactive", "-c", "1", env=env
    ) as proc:
        _ping(proc, client, timeout=60)
        yield proc, client


def _ping(proc: Any, client: Celery, timeout: float = 30) -> float:
    """Seconds until a ping sent now comes back (sent again while Redis refuses it)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc.poll() is None, f"the worker exited ({proc.returncode}); see {proc.log_path}"
        try:
            reply = client.send_task("rrpd.ping", kwargs={"payload": "back"}).get(timeout=3)
            assert reply == {"reply": "back"}
            return time.monotonic() - started
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"no ping came back within {timeout} s; see {proc.log_path}")


def _hold_an_eta_message(proc: Any, client: Celery, server: PrivateRedis, payload: str) -> Any:
    """Send a ping due later and wait until the worker holds it (reserved, not acknowledged)."""
    result = client.send_task("rrpd.ping", kwargs={"payload": payload}, countdown=8)
    unacked = redis.Redis.from_url(f"{server.url}/0")
    deadline = time.monotonic() + 15
    # kombu keeps each delivered message in this hash (by delivery tag) until it is acked.
    while not any(result.id.encode() in m for m in unacked.hvals(f"{_prefix()}:unacked")):
        assert proc.poll() is None, f"the worker exited; see {proc.log_path}"
        assert time.monotonic() < deadline, "the worker never reserved the ETA message"
        time.sleep(0.05)
    unacked.close()
    return result


def test_worker_rides_out_two_redis_restarts_while_holding_a_message() -> None:
    with private_redis() as server, _worker(server) as (proc, client):
        for _ in range(2):
            _hold_an_eta_message(proc, client, server, "held")
            server.stop()
            time.sleep(3)
            assert proc.poll() is None, f"the worker exited with Redis; see {proc.log_path}"
            server.start()
            recovered = _ping(proc, client)
            print(f"worker: Redis back -> first task done in {recovered:.1f} s")
        assert proc.poll() is None
        assert "Unrecoverable error" not in proc.log_path.read_text()


def test_a_message_held_across_a_restart_runs_as_soon_as_redis_is_back_with_its_data() -> None:
    """With AOF (production's setting) Redis still has the held message: the worker hands it
    back to its queue on reconnecting, instead of it waiting out the 20-minute visibility
    timeout."""
    with private_redis(appendonly=True) as server, _worker(server) as (proc, client):
        held = _hold_an_eta_message(proc, client, server, "held across the outage")
        server.stop()
        time.sleep(3)
        server.start()
        back = time.monotonic()
        assert held.get(timeout=30) == {"reply": "held across the outage"}
        print(f"worker: Redis back -> held task done in {time.monotonic() - back:.1f} s")
        assert proc.poll() is None
        assert "back to their queue" in proc.log_path.read_text()

"""Which failures the API answers with 503 and a retry hint instead of 500.

The real process against a stopped PostgreSQL is in ``test_dependency_outage``; here each kind
of outage error reaches a handler of its own, in process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kombu.exceptions
import pytest
import redis.exceptions
import sqlalchemy.exc
from fastapi.testclient import TestClient

from api_stub.app import create_app


def _raiser(exc: BaseException) -> Callable[[], None]:
    def endpoint() -> None:
        raise exc

    return endpoint


DATABASE_DOWN = [
    sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"),
]


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as chained:
        return chained


REDIS_DOWN = [
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379."),
    # What Celery raises from send_task when its result consumer cannot reach Redis.
    _raised_from(
        RuntimeError("Retry limit exceeded while trying to reconnect to the Celery result store"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    ),
]


@pytest.fixture
def outage_client() -> Iterator[TestClient]:
    app = create_app()
    for n, exc in enumerate([*DATABASE_DOWN, *REDIS_DOWN, RuntimeError("a bug")]):
        app.add_api_route(f"/_outage/{n}", _raiser(exc), methods=["GET"])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("n", "dependency"),
    [(n, "database") for n in range(len(DATABASE_DOWN))]
    + [(len(DATABASE_DOWN) + n, "broker") for n in range(len(REDIS_DOWN))],
)
def test_an_outage_error_is_503_with_retry_after(
    outage_client: TestClient, n: int, dependency: str
) -> None:
    r = outage_client.get(f"/_outage/{n}")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    error = r.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"] == [{"dependency": dependency}]
    assert "try again in a few seconds" in error["message"]
    word = {"database": "database", "broker": "task queue"}[dependency]
    assert word in error["message"]


def test_a_bug_is_still_a_500_that_says_nothing(outage_client: TestClient) -> None:
    r = outage_client.get(f"/_outage/{len(DATABASE_DOWN) + len(REDIS_DOWN)}")
    assert r.status_code == 500
    assert "retry-after" not in r.headers
    assert r.json() == {
        "error": {"code": "internal_error", "message": "Something went wrong on our side."}
    }


def test_readyz_names_the_broker_and_gives_a_retry_hint_while_redis_is_down(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DeadRedis:
        def ping(self) -> None:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    monkeypatch.setattr("api_stub.health.redis_client", DeadRedis)
    with TestClient(create_app()) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json()["checks"] == {
        "configuration": "ok",
        "database": "ok",
        "broker": "unavailable: ConnectionError",
    }


def test_openapi_documents_the_503_on_every_v1_operation(outage_client: TestClient) -> None:
    paths = outage_client.get("/openapi.json").json()["paths"]
    ops = [(p, m, op) for p, ms in paths.items() if p.startswith("/v1/") for m, op in ms.items()]
    assert len(ops) >= 10
    for path, method, op in ops:
        unavailable = op["responses"]["503"]
        assert "Retry-After" in unavailable["headers"], (path, method)
        schema = unavailable["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method)

"""The private servers fault tests stop and start behave as outages do."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests.support.private_services import private_postgres, private_redis


def test_a_stopped_redis_refuses_connections_and_comes_back_empty() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        client.set("k", "v")
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert client.ping()
        assert client.get("k") is None


def test_a_redis_with_appendonly_comes_back_with_its_data() -> None:
    with private_redis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        client.set("k", "v")
        server.stop()
        server.start()
        assert client.get("k") == b"v"


def test_a_crashed_postgres_keeps_what_was_committed() -> None:
    with private_postgres() as server:
        with psycopg.connect(server.url()) as conn:
            conn.execute("CREATE TABLE t (a int)")
            conn.execute("INSERT INTO t VALUES (1)")
        server.stop("immediate")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url(), connect_timeout=1)
        server.start()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]

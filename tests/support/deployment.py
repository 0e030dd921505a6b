"""A deployment of a test's own: its database, its Redis (to stop and start), its processes.

Outbox rows live in the database, and any relay connected to a database publishes its rows to
*its* Redis. The live workers other tests share use this test process's database and the
shared Redis; a fault test that stops Redis or kills a relay therefore gets a database of its
own too (on the shared PostgreSQL server, created and migrated here) and a private Redis
(``tests.support.private_services``), and starts its API and workers against both.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support import processes
from tests.support.private_services import PrivateRedis


@dataclass
class Deployment:
    database_url: str
    redis: PrivateRedis
    prefix: str
    base_env: dict[str, str]
    engine: Engine = field(init=False)
    stack: ExitStack = field(default_factory=ExitStack)

    def __post_init__(self) -> None:
        from workers.core import crypto

        crypto.install()  # as make_engine does: this engine is built here
        self.engine = create_engine(
            self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.base_env,
            "RRPD_DATABASE_URL": self.database_url,
            "RRPD_BROKER_URL": f"{self.redis.url}/0",
            "RRPD_RESULT_BACKEND": f"{self.redis.url}/1",
            "RRPD_REDBEAT_URL": f"{self.redis.url}/0",
            "RRPD_REDIS_KEY_PREFIX": self.prefix,
        }

    def session(self) -> Session:
        return sessionmaker(self.engine, expire_on_commit=False)()

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(f"{self.redis.url}/0", socket_timeout=2)

    def celery(self) -> Any:
        """A Celery client that sends to (and reads results from) this deployment."""
        from celery import Celery

        client = Celery("rrpd-deployment-client", set_as_current=False)
        client.config_from_object("celeryconfig")
        client.conf.broker_url = f"{self.redis.url}/0"
        client.conf.result_backend = f"{self.redis.url}/1"
        for option in ("broker_transport_options", "result_backend_transport_options"):
            client.conf[option] = {**client.conf[option], "global_keyprefix": f"{self.prefix}:"}
        return client

    def wait_for_worker(self, proc: subprocess.Popen[bytes], queue: str = "interactive") -> None:
        client = self.celery()
        deadline = time.monotonic() + 60
        while True:
            try:
                ping = client.send_task("rrpd.ping", kwargs={"payload": "up"}, queue=queue)
                if ping.get(timeout=5) == {"reply": "up"}:
                    return
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"worker did not start; see {proc.log_path}") from None  # type: ignore[attr-defined]

    def worker(
        self, queues: str = "interactive,sync,schedule", *, name: str | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """``rrpd worker`` on this deployment (returns once its process started)."""
        args = ["worker", "--queues", queues, "--concurrency", "2"]
        if name:
            args += ["--hostname", name]
        return self.stack.enter_context(
            processes.rrpd_process(f"dep-worker-{queues}", *args, env={**self.env, **env})
        )

    def api(self) -> str:
        port = processes.free_port()
        env = {**self.env, "RRPD_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        proc = self.stack.enter_context(
            processes.rrpd_process("dep-api", "api", "--port", str(port), env=env)
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "API exited before it started"
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.1)

    def run_python(self, code: str, **env: str) -> subprocess.Popen[bytes]:
        """A Python process of the project on this deployment (e.g. a relay to kill)."""
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env={**self.base_env, **self.env, **env},
            cwd=processes.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _admin(sql: str) -> None:
    from tests.support.env import PG_ADMIN_URL

    engine = create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


@contextmanager
def deployment(**extra_env: str) -> Iterator[Deployment]:
    import os

    from tests.support.env import TEST_DB_NAME, pg_url
    from workers.core.migrate import upgrade

    name = f"{TEST_DB_NAME}_dep_{uuid.uuid4().hex[:6]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = pg_url(name)
    server = PrivateRedis()
    server.start()
    prefix = f"{os.environ['RRPD_REDIS_KEY_PREFIX']}-dep-{uuid.uuid4().hex[:6]}"
    dep = Deployment(url, server, prefix, dict(extra_env))
    try:
        upgrade(url)
        with dep.stack:
            yield dep
    finally:
        dep.engine.dispose()
        server.stop()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def read_stream(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(fields[b"event"]) for _id, fields in client.xrange(key)]

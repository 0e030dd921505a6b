"""The consumer of docs/events.md, in a process of its own, sees a bind, a handoff and a
disconnect - in order, nothing missing, nothing twice - although it is killed and restarted.

The consumer is the code block of docs/events.md, run with ``python -S`` (no ``.pth`` files,
so not even the editable install's finder: only site-packages for ``redis``); the project is
not importable in it. The changes are made as the API makes them (domain functions in one
transaction each) and carried out by the real workers; the events go through the outbox and the
relay to the Redis stream.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
from sqlalchemy import select

from models import OutboxMessage, PagerDutyConnection, Role
from pagerduty_sim.server import SimulatorHandle
from tests.support.outbox import committed_events
from tests.support.private_services import PrivateRedis
from tests.support.sync import ACCOUNT, arrange_demo, fast_client
from workers.core.access import Actor
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.disconnect.request import request_disconnect
from workers.rotations import binding
from workers.sync import run as sync
from workers.sync.request import sync_now

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text())


def documented_consumer() -> str:
    doc = (ROOT / "docs" / "events.md").read_text()
    block = doc[doc.index("<!-- consumer: begin -->") : doc.index("<!-- consumer: end -->")]
    match = re.search(r"```python\n(.*?)```", block, re.S)
    assert match, "docs/events.md has no consumer code block"
    return match.group(1)


class Consumer:
    def __init__(self, tmp: Path, group: str, redis_url: str | None = None) -> None:
        self.script = tmp / "consumer.py"
        self.script.write_text(documented_consumer())
        self.out = tmp / "events.jsonl"
        self.group = group
        self.redis_url = redis_url or get_settings().broker_url
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        site = sysconfig.get_paths()["purelib"]
        bootstrap = (
            f"import sys; sys.path.append({site!r}); sys.argv = {self._argv()!r}\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('workers') is None\n"
            f"exec(compile(open({str(self.script)!r}).read(), 'consumer.py', 'exec'))\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", bootstrap],
            cwd=self.script.parent,
            env={"PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + self.proc.stdout.read()

    def _argv(self) -> list[str]:
        return [
            "consumer.py",
            "--redis",
            self.redis_url,
            "--stream",
            get_settings().effective_events_stream,
            "--group",
            self.group,
            "--consumer",
            "consumer-1",
            "--out",
            str(self.out),
        ]

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def events(self, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["workspace_id"] == str(workspace_id)]


def _wait(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _all_published(session: Any) -> bool:
    session.rollback()
    return not session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.published_at.is_(None)).limit(1)
    )


def test_a_consumer_sees_bind_handoff_and_disconnect_in_order_across_a_restart(
    session: Any, sim: SimulatorHandle, live_workers: Any, tmp_path: Path
) -> None:
    demo = arrange_demo(session, sim, bind={})
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    ws, rotation = demo.workspace_id, demo.manual_rotation
    actor = Actor(ws, demo.members["alice"], Role.ADMIN)
    consumer = Consumer(tmp_path, group=f"test-{uuid.uuid4().hex[:8]}")
    consumer.start()

    def rotation_events(kind: str) -> list[dict[str, Any]]:
        return [e for e in consumer.events(ws) if e["type"] == kind]

    # 1. Bind: the API's transaction says so; the sync it enqueues fills the rotation.
    with transaction() as tx:
        binding.bind_rotation(tx, actor, rotation, "PSPRIMA")
    _wait(lambda: rotation_events("rotation.on_duty.changed"), "the bind's on-duty event")

    # 2. The consumer dies; meanwhile a handoff (an override in PagerDuty) and a disconnect.
    consumer.kill()
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUBOB01", "start": "now-1m", "duration_seconds": 3600},
    ).raise_for_status()
    with transaction() as tx:
        sync_now(tx, actor)
    _wait(
        lambda: (
            len([e for e in committed_events() if e["type"] == "rotation.on_duty.changed"]) == 2
        ),
        "the handoff",
    )
    with transaction() as tx:
        request_disconnect(tx, actor)

    def disconnected() -> bool:
        session.expire_all()
        return session.get(PagerDutyConnection, demo.connection_id).status == "disconnected"

    _wait(disconnected, "the disconnect")
    _wait(lambda: _all_published(session), "the relay to publish everything")
    # As a consumer that read an entry and died before acknowledging it would have left it.
    client = redis.Redis.from_url(get_settings().broker_url)
    stream = get_settings().effective_events_stream
    assert client.xreadgroup(consumer.group, "consumer-1", {stream: ">"}, count=1)

    # 3. It comes back: its pending entry first, then everything it missed.
    consumer.start()
    _wait(
        lambda: any(
            e["type"] == "connection.status.changed" and e["data"]["status"] == "disconnected"
            for e in consumer.events(ws)
        ),
        "the disconnect event at the consumer",
    )
    time.sleep(1.5)  # nothing more is coming; let a duplicate, if any, show up
    consumer.kill()

    seen = consumer.events(ws)
    written = [e for e in committed_events() if e["workspace_id"] == str(ws)]
    assert [e["id"] for e in seen] == [e["id"] for e in written]  # all, in order, once
    assert seen == written
    for event in seen:
        jsonschema.validate(event, SCHEMA)

    per_key: dict[str, list[int]] = defaultdict(list)
    for e in seen:
        per_key[e.get("rotation_id") or e["connection_id"]].append(e["sequence"])
    assert all(seq == list(range(1, len(seq) + 1)) for seq in per_key.values()), per_key

    kinds = [(e["type"], e["data"].get("status") or e["data"].get("reason")) for e in seen]
    assert kinds[0] == ("rotation.bound", None)
    on_duty = rotation_events("rotation.on_duty.changed")
    assert len(on_duty) == 2
    assert on_duty[1]["data"]["came_on_duty"] == [str(demo.members["bob"])]  # the handoff
    assert kinds[-3:] == [
        ("connection.status.changed", "disconnecting"),
        ("rotation.made_manual", "disconnected"),
        ("connection.status.changed", "disconnected"),
    ]
    made_manual = rotation_events("rotation.made_manual")[0]
    assert made_manual["rotation_id"] == str(rotation)
    assert str(demo.members["bob"]) in made_manual["data"]["on_duty"]


def test_the_consumer_waits_out_a_redis_outage_and_a_redis_that_lost_its_data(
    tmp_path: Path,
) -> None:
    """A Redis of its own (the shared one serves every other test), SIGKILLed under the
    consumer and started again empty, as a Redis without persistence comes back."""
    server = PrivateRedis()
    server.start()
    stream = get_settings().effective_events_stream
    client = redis.Redis.from_url(f"{server.url}/0", decode_responses=True)
    ws, cid = str(uuid.uuid4()), str(uuid.uuid4())

    def publish(sequence: int) -> None:
        event = {"id": str(uuid.uuid4()), "type": "connection.status.changed"}
        event |= {"workspace_id": ws, "connection_id": cid, "sequence": sequence}
        client.xadd(stream, {"event": json.dumps(event)})

    def has_group() -> bool:
        try:
            return any(g["name"] == "outage" for g in client.xinfo_groups(stream))
        except redis.ResponseError:  # no stream yet
            return False

    consumer = Consumer(tmp_path, group="outage", redis_url=f"{server.url}/0")
    try:
        consumer.start()
        publish(1)
        _wait(lambda: len(consumer.events(uuid.UUID(ws))) == 1, "the first event")
        server.stop()
        assert consumer.proc is not None
        assert consumer.proc.stdout is not None
        said = consumer.proc.stdout.readline()  # a consumer that died says its traceback
        assert said.startswith("Redis unavailable ("), said + consumer.proc.stdout.read()
        server.start()
        _wait(has_group, "the consumer to create its group again")
        publish(2)
        _wait(lambda: len(consumer.events(uuid.UUID(ws))) == 2, "the event after the outage")
        assert consumer.proc.poll() is None
    finally:
        if consumer.proc is not None:
            consumer.kill()
        server.stop()

"""The outbox under faults: Redis down across a commit, and a relay killed mid-batch.

Each test runs a deployment of its own (``tests.support.deployment``): a database, a private
Redis it may stop, and its own API / worker / relay processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api_stub.auth import issue_token
from models import OutboxKind, OutboxMessage, PagerDutyConnection, Role, SyncRun, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.deployment import Deployment, deployment, read_stream
from tests.support.stack import demo_api_key
from workers import events
from workers.outbox.writer import add_task
from workers.tasking.contract import PING

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


def _sim_env(sim: SimulatorHandle) -> dict[str, str]:
    return {
        "RRPD_PAGERDUTY_API_URL": sim.base_url,
        "RRPD_PAGERDUTY_EU_API_URL": sim.eu_base_url,
        "RRPD_PAGERDUTY_IDENTITY_URL": sim.identity_url,
    }


def _wait(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _unpublished(dep: Deployment) -> list[tuple[str, str]]:
    with dep.session() as s:
        return [
            (kind, name)
            for kind, name in s.execute(
                select(OutboxMessage.kind, OutboxMessage.name)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
            )
        ]


def _status(dep: Deployment, cid: uuid.UUID) -> str:
    with dep.session() as s:
        return str(s.get(PagerDutyConnection, cid).status)


def _status_events(dep: Deployment, cid: uuid.UUID) -> list[tuple[int, str]]:
    stream = read_stream(dep.redis_client(), f"{dep.prefix}:events")
    return [
        (e["sequence"], e["data"]["status"])
        for e in stream
        if e["type"] == "connection.status.changed" and e["connection_id"] == str(cid)
    ]


def test_redis_down_across_api_commits_answers_at_once_and_nothing_is_lost(
    sim: SimulatorHandle,
) -> None:
    with deployment(**_sim_env(sim)) as dep:
        with dep.session() as s:
            ws = factories.workspace(s)
            owner = factories.member(s, ws, role=Role.PRIMARY_OWNER)
            s.commit()
        headers = {"Authorization": f"Bearer {issue_token(ws.id, owner.id, 'primary_owner')}"}
        api = dep.api()

        # 1. Connect while Redis is down: the answer comes at once, the work waits in the outbox.
        dep.redis.stop()
        started = time.monotonic()
        r = httpx.put(
            f"{api}/v1/workspaces/{ws.id}/pagerduty/api-key",
            json={"api_key": demo_api_key(sim)},
            headers=headers,
            timeout=60,
        )
        connect_seconds = time.monotonic() - started
        assert r.status_code == 202, r.text
        assert connect_seconds < 2.0, connect_seconds
        cid = uuid.UUID(r.json()["connection"]["id"])
        assert _status(dep, cid) == "validating"
        waiting = _unpublished(dep)
        assert ("task", "pagerduty.validate_api_key") in waiting
        assert ("event", "connection.status.changed") in waiting

        # Redis comes back (empty: it keeps nothing on disk); a worker node's relay publishes.
        dep.redis.start()
        worker = dep.worker()
        _wait(lambda: _status(dep, cid) == "connected", "the validation to run")
        _wait(lambda: not _unpublished(dep), "the outbox to drain")
        assert _status_events(dep, cid) == [(1, "validating"), (2, "connected")]
        # The first sync the validation enqueued ran too (an outbox row of the worker's commit).
        with dep.session() as s:
            _wait(
                lambda: s.scalar(
                    select(func.count()).select_from(SyncRun).where(SyncRun.connection_id == cid)
                ),
                "the first sync",
            )

        # 2. Disconnect while Redis is down (no worker either): 202 at once, done when back.
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        dep.redis.stop()
        started = time.monotonic()
        r = httpx.delete(f"{api}/v1/workspaces/{ws.id}/pagerduty", headers=headers, timeout=60)
        disconnect_seconds = time.monotonic() - started
        assert r.status_code == 202, r.text
        assert disconnect_seconds < 2.0, disconnect_seconds
        assert ("task", "pagerduty.disconnect") in _unpublished(dep)
        dep.redis.start()
        dep.worker()
        _wait(lambda: _status(dep, cid) == "disconnected", "the disconnect to run")
        _wait(lambda: not _unpublished(dep), "the outbox to drain")
        # What the first Redis held was lost with it, what came after is all there, in order.
        statuses = _status_events(dep, cid)
        assert statuses == [(3, "disconnecting"), (4, "disconnected")], statuses
        print(
            f"API with Redis down: connect {connect_seconds:.3f} s, "
            f"disconnect {disconnect_seconds:.3f} s"
        )


RELAY_TO_KILL = """
import time
from workers.outbox import publisher, relay
from workers.outbox import event_stream as stream

lane = LANE
real_send, real_append = publisher.send, stream.append

def send(name, kwargs, **options):
    real_send(name, kwargs, **options)
    print("published", options["task_id"], flush=True)
    time.sleep(0.03)

def append(items):
    for doc, key in items:
        real_append([(doc, key)])
        print("published", doc["id"], flush=True)
        time.sleep(0.03)

publisher.send, stream.append = send, append
print(relay.relay_lane(lane, batch=1000), flush=True)
"""


# (PostgreSQL may take a moment to end the killed relay's session and free its lane lock.)
RELAY_UNTIL_DONE = """
import time
from workers.outbox import relay
for _ in range(100):
    rounds = relay.relay_all(batch=1000)
    if not any(r.busy or r.error or r.full for r in rounds):
        break
    time.sleep(0.1)
print(rounds)
"""


def test_a_relay_killed_mid_batch_loses_nothing_and_duplicates_keep_their_ids() -> None:
    with deployment() as dep:
        rotations = [uuid.uuid4() for _ in range(5)]
        member = uuid.uuid4()
        with dep.session() as s:
            ws = factories.workspace(s)
            task_ids = [str(uuid.uuid4()) for _ in range(40)]
            for n, task_id in enumerate(task_ids):
                add_task(s, PING, task_id=task_id, kwargs={"payload": f"p{n}"}, workspace_id=ws.id)
            for step in range(8):
                for rid in rotations:
                    events.rotation_on_duty_changed(
                        s,
                        workspace_id=ws.id,
                        rotation_id=rid,
                        connection_id=None,
                        schedule_id="PSCHED1",
                        before=set() if step % 2 == 0 else {member},
                        after={member} if step % 2 == 0 else set(),
                        occurred_at=utcnow(),
                    )
            s.commit()
        with dep.session() as s:
            event_ids = [
                r.payload["id"]
                for r in s.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.kind == OutboxKind.EVENT)
                    .order_by(OutboxMessage.id)
                )
            ]

        killed: dict[str, list[str]] = {}
        for lane in ("interactive", "events"):
            killed[lane] = _kill_mid_batch_lane(dep, lane, after=15)
            # The kill rolled the relay's transaction back: nothing is marked published.
            assert len(_unpublished(dep)) == len(task_ids) + len(event_ids)

        # The next relay (here: one round per lane) publishes everything, again or for the first
        # time.
        proc = dep.run_python(RELAY_UNTIL_DONE, RRPD_WORKER_LOOPS="none")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert _unpublished(dep) == []

        redis = dep.redis_client()
        queued = Counter(
            json.loads(raw)["headers"]["id"]
            for raw in redis.lrange(f"{dep.prefix}:interactive", 0, -1)
        )
        assert set(queued) == set(task_ids)  # nothing lost
        assert {t for t, n in queued.items() if n == 2} == set(killed["interactive"])
        assert max(queued.values()) == 2

        stream = read_stream(redis, f"{dep.prefix}:events")
        seen = Counter(e["id"] for e in stream)
        assert set(seen) == set(event_ids)
        assert {e for e, n in seen.items() if n == 2} == set(killed["events"])
        # De-duplicated by id, each rotation's events are in order, without gaps.
        by_rotation: dict[str, list[int]] = defaultdict(list)
        first_seen: set[str] = set()
        for e in stream:
            if e["id"] not in first_seen:
                first_seen.add(e["id"])
                by_rotation[e["rotation_id"]].append(e["sequence"])
        assert all(seqs == list(range(1, 9)) for seqs in by_rotation.values()), by_rotation


def _kill_mid_batch_lane(dep: Deployment, lane: str, after: int) -> list[str]:
    proc = dep.run_python(RELAY_TO_KILL.replace("LANE", repr(lane)), RRPD_WORKER_LOOPS="none")
    assert proc.stdout is not None
    published: list[str] = []
    while len(published) < after:
        line = proc.stdout.readline().decode()
        assert line, f"the relay ended before the kill: {published}"
        if line.startswith("published "):
            published.append(line.split()[1])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return published

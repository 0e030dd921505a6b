"""What a dead worker node held goes back to its queue within seconds, not after 20 minutes.

With ``acks_late`` a message a worker has taken sits in the broker's ``unacked`` hash until the
task ends. If the whole node dies (SIGKILL, OOM, machine lost) nobody acknowledges or returns
it, and Redis hands it out again only when the visibility timeout (1,200 s, sized for the
longest countdown) has passed. A killed worker's disconnect used to wait for a 2-minute sweep.

So every worker node keeps, in Redis, the delivery tags of the messages it holds (added when a
message is received, in the node's main process; pruned once the broker no longer lists them)
and a heartbeat. The ``redelivery`` background loop of every node then returns to their queue
the messages held by an incarnation that is certainly dead:

* a previous incarnation of the same node name, whose last heartbeat is older than this
  incarnation's start - so a worker that comes back after a crash returns what it held a few
  seconds after it starts (node names are unique among live workers, docs/operations.md; two
  live workers that share one keep beating and are left alone);
* an incarnation whose heartbeat expired (``RRPD_WORKER_HEARTBEAT_SECONDS``, 30 s) - a node
  that does not come back is taken over by the others - but only by a node that has itself
  been beating for longer than that (after a Redis outage every heartbeat has lapsed; nobody
  is declared dead until the live ones had time to beat again).

A message is returned with kombu's own ``restore_by_tag`` (the transaction the visibility
timeout would run), never while a live node lists the same tag. Tasks are idempotent, so the
rare double run this allows (a node that was only frozen for that long) is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import redis
from celery.signals import celeryd_after_setup, task_received, worker_shutdown

from workers.core.redis import client, key
from workers.core.settings import get_settings
from workers.tasking.loops import register_loop

log = logging.getLogger(__name__)

ROUND_SECONDS = 2.0


def heartbeat_ttl() -> int:
    return get_settings().worker_heartbeat_seconds


_state: dict[str, Any] = {"node": None, "incarnation": None, "started": 0.0}


def _keys(incarnation: str) -> tuple[str, str]:
    return key("redelivery", "alive", incarnation), key("redelivery", "held", incarnation)


def _nodes_key() -> str:
    return key("redelivery", "nodes")


def start(node: str) -> str:
    """This process is worker node ``node`` (a new incarnation of it): register at once."""
    incarnation = uuid.uuid4().hex
    _state.update(node=node, incarnation=incarnation, started=time.time())
    try:
        _heartbeat()
    except redis.RedisError:
        log.warning("redelivery: could not register this node yet", exc_info=True)
    return incarnation


def _heartbeat() -> None:
    node, incarnation = _state["node"], _state["incarnation"]
    if not node or not incarnation:
        return
    alive, _held = _keys(incarnation)
    pipe = client().pipeline(transaction=False)
    pipe.set(alive, repr(time.time()), ex=heartbeat_ttl())
    pipe.hset(_nodes_key(), incarnation, node)
    pipe.execute()


def held(tag: str) -> None:
    """A message was received by this node (before its ETA, if it has one)."""
    incarnation = _state["incarnation"]
    if incarnation and tag:
        # On failure the visibility timeout is the fallback, as without this module.
        with contextlib.suppress(redis.RedisError):
            client().sadd(_keys(incarnation)[1], tag)


def stop() -> None:
    """A warm shutdown: the worker returns what it holds itself; forget this incarnation."""
    incarnation = _state["incarnation"]
    if not incarnation:
        return
    with contextlib.suppress(redis.RedisError):
        pipe = client().pipeline(transaction=False)
        pipe.delete(*_keys(incarnation))
        pipe.hdel(_nodes_key(), incarnation)
        pipe.execute()
    _state.update(node=None, incarnation=None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> list[str]:
    return [_text(v) for v in values]


def _unacked_key(channel: Any) -> str:
    # The broker's hash of unacknowledged messages, as stored (kombu adds our key prefix to
    # the commands it sends itself, not to HEXISTS).
    return key(channel.unacked_key)


class _Redelivery:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        # Since when this node's heartbeats have been succeeding without a break.
        self._beating_since: float | None = None

    def _channel(self) -> Any:
        if self._connection is None:
            from workers.tasking.app import app

            self._connection = app.connection_for_write()
        return self._connection.default_channel

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # dropping a broken connection
                self._connection.release()
        self._connection = None

    def step(self) -> float:
        if not _state["incarnation"]:
            return ROUND_SECONDS * 5
        with self._lock:
            try:
                _heartbeat()
                if self._beating_since is None:
                    self._beating_since = time.time()
                channel = self._channel()
                self._prune(channel)
                self._recover(channel)
            except Exception:
                self._beating_since = None
                self._drop()
                raise
        return ROUND_SECONDS

    def _prune(self, channel: Any) -> None:
        """Forget tags the broker no longer lists as unacknowledged (acked or returned)."""
        held_key = _keys(str(_state["incarnation"]))[1]
        tags = _texts(client().smembers(held_key))
        if not tags:
            return
        pipe = client().pipeline(transaction=False)
        for tag in tags:
            pipe.hexists(_unacked_key(channel), tag)
        gone = [tag for tag, there in zip(tags, pipe.execute(), strict=True) if not there]
        if gone:
            client().srem(held_key, *gone)

    def _recover(self, channel: Any) -> None:
        mine, node, started = _state["incarnation"], _state["node"], float(_state["started"])
        now = time.time()
        steady = self._beating_since is not None and now - self._beating_since > heartbeat_ttl()
        nodes = {_text(k): _text(v) for k, v in client().hgetall(_nodes_key()).items()}
        live: list[str] = []
        dead: list[str] = []
        for incarnation, name in nodes.items():
            beat_raw = None if incarnation == mine else client().get(_keys(incarnation)[0])
            beat = float(beat_raw) if beat_raw else None
            if incarnation == mine:
                live.append(incarnation)
            elif name == node and (beat is None or beat < started):
                # This node's previous life: it has not beaten since this one started (a live
                # worker of the same name would have, within a round or two).
                (dead if now - started > 4 * ROUND_SECONDS else live).append(incarnation)
            elif beat is None:
                # Expired: dead, if this node has been up long enough to tell.
                (dead if steady else live).append(incarnation)
            else:
                live.append(incarnation)
        if not dead:
            return
        kept: set[str] = set()
        for incarnation in live:
            kept |= set(_texts(client().smembers(_keys(incarnation)[1])))
        for incarnation in dead:
            claim = key("redelivery", "claim", incarnation)
            if not client().set(claim, str(mine), nx=True, ex=60):
                continue  # another node is returning this one's messages
            alive, held_key = _keys(incarnation)
            returned = 0
            for tag in _texts(client().smembers(held_key)):
                if tag in kept or not client().hexists(_unacked_key(channel), tag):
                    continue
                channel.qos.restore_by_tag(tag)
                returned += 1
            pipe = client().pipeline(transaction=False)
            pipe.delete(held_key, alive, claim)
            pipe.hdel(_nodes_key(), incarnation)
            pipe.execute()
            if returned:
                log.warning(
                    "redelivery: returned %d message(s) held by dead worker %s to their queue",
                    returned,
                    nodes[incarnation],
                )


def _on_worker_setup(sender: str, **_: Any) -> None:
    start(str(sender))


def _on_task_received(request: Any = None, **_: Any) -> None:
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    if tag:
        held(str(tag))


def _on_worker_shutdown(**_: Any) -> None:
    stop()


celeryd_after_setup.connect(_on_worker_setup, weak=False)
task_received.connect(_on_task_received, weak=False)
worker_shutdown.connect(_on_worker_shutdown, weak=False)

_redelivery = _Redelivery()
register_loop("redelivery", _redelivery.step, max_sleep=ROUND_SECONDS * 5)

"""Tasks another service sends by name reach the queue the contract declares.

A sender that knows only the broker URL, the key prefix and a public task name
(``Celery(broker=...).send_task("pagerduty.sync_connection", kwargs=...)``) publishes to
Celery's default queue, ``celery``: routes are configuration of *our* app, which the sender does
not have. Every worker node therefore runs the ``intake`` background loop
(``workers.tasking.loops``), which takes messages from that queue and, for each one:

* a known public task whose arguments the contract accepts is re-published, unchanged (same
  task id, same headers and body), to its declared queue (``interactive`` or ``sync``), and
  acknowledged after that publish;
* anything else (an unknown task name, a message in Celery's old protocol, unknown, missing or
  malformed arguments) is refused: its result becomes
  ``{"status": "refused", "task", "error"}``, one WARNING line is logged, and it is acknowledged
  (never retried).

Why a loop and not the tasks themselves: a forwarded message never occupies a worker slot, so
a flood of foreign sync requests cannot hold up interactive work (which has its own queue and
workers), and nothing of the detour shows in the task's state or result. At-least-once: a node
killed between the publish and the acknowledgement leaves the message to be redelivered, and
the task then runs twice under one id (tasks are idempotent).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from workers.tasking.checks import Refused, refusal
from workers.tasking.contract import BY_NAME, QUEUES
from workers.tasking.loops import register_loop

log = logging.getLogger(__name__)

# Celery's default queue (``task_default_queue`` of an app that sets nothing).
DEFAULT_QUEUE = "celery"
# Messages handled per round before the loop yields (the round then starts again at once).
BATCH = 200
# How long a round waits for the first message.
WAIT_SECONDS = 1.0

_default = Queue(  # type: ignore[no-untyped-call]
    DEFAULT_QUEUE,
    Exchange(DEFAULT_QUEUE, type="direct"),  # type: ignore[no-untyped-call]
    routing_key=DEFAULT_QUEUE,
)
_targets = {
    name: Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
    for name in QUEUES
}


class _Intake:
    """One broker connection per node (the loop's thread), made again after an error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._queue: Any = None
        self._producer: Any = None

    def _open(self) -> None:
        from workers.tasking.app import app

        self._connection = app.connection_for_read()
        self._queue = self._connection.SimpleQueue(_default, no_ack=False)
        self._producer = self._connection.Producer()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # a dead connection is being dropped anyway
                self._connection.release()  # type: ignore[no-untyped-call]
        self._connection = self._queue = self._producer = None

    def step(self) -> float:
        with self._lock:
            if self._connection is None:
                self._open()
            try:
                handled = 0
                while handled < BATCH:
                    try:
                        message = self._queue.get(block=handled == 0, timeout=WAIT_SECONDS)
                    except self._queue.Empty:
                        break
                    handle(message, self._producer)
                    handled += 1
            except Exception:
                self.close()
                raise
        return 0.0


def _describe(message: Any) -> tuple[str | None, str | None, Any, Any]:
    """(task name, task id, args, kwargs) of a Celery protocol 2 message."""
    headers = message.headers or {}
    name, task_id = headers.get("task"), headers.get("id")
    body = message.decode()
    if not name and isinstance(body, dict):
        # Celery's protocol 1 (``task_protocol=1``): everything is in the body.
        return None, body.get("id"), None, None
    if not (isinstance(body, list | tuple) and len(body) == 3):
        return name, task_id, None, None
    return name, task_id, body[0], body[1]


def handle(message: Any, producer: Any) -> str:
    """Forward or refuse one message from the default queue; returns what was done."""
    try:
        name, task_id, args, kwargs = _describe(message)
    except Exception:
        name, task_id, args, kwargs = None, None, None, None
    try:
        spec = BY_NAME.get(name or "")
        if spec is None:
            known = ", ".join(sorted(BY_NAME))
            raise Refused(
                f"no task named {name!r} (Celery protocol 2 messages only); known: {known}"
                if name
                else "not a Celery protocol 2 task message"
            )
        if kwargs is None:
            raise Refused(f"{spec.name}: the message body is not (args, kwargs, embed)")
        spec.check_message(args, kwargs)
    except Refused as exc:
        _refuse(task_id, name or "?", str(exc))
        message.ack()
        return "refused"
    target = _targets[spec.queue]
    producer.publish(
        message.body,
        exchange=target.exchange,
        routing_key=target.routing_key,
        declare=[target],
        headers=message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        correlation_id=message.properties.get("correlation_id"),
        reply_to=message.properties.get("reply_to"),
        priority=message.properties.get("priority"),
        serializer=None,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
    )
    message.ack()
    log.info(
        "intake: %s forwarded to %s",
        spec.name,
        spec.queue,
        extra={"task_id": task_id, "task_name": spec.name},
    )
    return "forwarded"


def _refuse(task_id: str | None, name: str, error: str) -> None:
    log.warning("refused %s: %s", name, error, extra={"task_id": task_id, "task_name": name[:100]})
    if not task_id:
        return
    from workers.tasking.app import app

    # The sender reads this like any result (``AsyncResult(id).get()``).
    app.backend.store_result(str(task_id)[:200], refusal(name[:100], error), "SUCCESS")


_intake = _Intake()
register_loop("intake", _intake.step, max_sleep=1.0)

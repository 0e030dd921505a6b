"""Losing a published task message on purpose, deterministically, with real workers.

What happens in production when kombu's Redis transport pops a message (BRPOP) and the worker
is SIGKILLed before it records it as unacked: the outbox row says published, the queue no
longer has it, no worker ever runs it. Here: the workers consuming the queue stop consuming it
(Celery's remote control), the task is published, its queue's Redis lists are emptied, and the
workers consume again. Only the database can bring the work back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from workers.core import metrics
from workers.core.redis import client, key
from workers.tasking.app import app

# Celery's Redis transport keeps a priority queue as several lists (workers.core.metrics).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def _queue_keys(queue: str) -> list[str]:
    prefix = f"{key()}:" if key() else ""
    return [
        f"{prefix}{queue}{_PRIORITY_SEP}{p}" if p else f"{prefix}{queue}" for p in _PRIORITY_STEPS
    ]


@contextmanager
def consumer_paused(queue: str) -> Iterator[list[str]]:
    """The nodes consuming ``queue`` stop taking its messages until the block ends."""
    replies = app.control.inspect(timeout=3).active_queues() or {}
    nodes = [node for node, queues in replies.items() if any(q["name"] == queue for q in queues)]
    assert nodes, f"no worker consumes {queue}"
    app.control.cancel_consumer(queue, destination=nodes, reply=True, timeout=3)
    # A BRPOP already waiting when the consumer was cancelled returns within its 1 s timeout.
    time.sleep(2.5)
    try:
        yield nodes
    finally:
        app.control.add_consumer(queue, destination=nodes, reply=True, timeout=3)


def lose_published(queue: str, expected: int = 1, timeout: float = 10) -> int:
    """Wait until ``expected`` messages are in ``queue`` (published by the relay), then empty
    it: those messages are lost. Returns how many were dropped."""
    deadline = time.monotonic() + timeout
    while metrics.queue_lengths([queue])[queue] < expected:
        assert time.monotonic() < deadline, f"nothing published to {queue}"
        time.sleep(0.05)
    pipe = client().pipeline(transaction=True)
    keys = _queue_keys(queue)
    for name in keys:
        pipe.llen(name)
    for name in keys:
        pipe.delete(name)
    return int(sum(pipe.execute()[: len(keys)]))

"""Publishing task messages: never waits on the result backend, short timeouts, few retries.

``app.send_task`` on our Celery app subscribes to the task's result channel before it
publishes (the Redis result backend's ``on_task_call``); with Redis away that alone retried
for ~19 s inside an API request. The publisher is a second Celery app with the same
configuration but **no result backend**: a message it sends is exactly the one ``send_task``
would send (workers still store results, which the tasks ask for), without the subscription.
Its broker connection fails fast (connect 2 s, socket 5 s) and a publish is retried twice at
most; the outbox keeps what could not be published.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery

from workers.core.process import after_fork

RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

_lock = threading.Lock()
_app: Celery | None = None


def publisher() -> Celery:
    global _app
    with _lock:
        if _app is None:
            app = Celery("rrpd-publisher", set_as_current=False)
            app.config_from_object("celeryconfig")
            app.conf.result_backend = None
            app.conf.broker_transport_options = {
                **app.conf.broker_transport_options,
                "socket_connect_timeout": 2,
                "socket_timeout": 5,
                "retry_on_timeout": False,
            }
            app.conf.broker_connection_timeout = 2
            app.conf.broker_pool_limit = 4
            _app = app
        return _app


@after_fork
def _forget() -> None:
    global _app, _lock
    _app = None
    _lock = threading.Lock()


def send(
    name: str,
    kwargs: dict[str, Any],
    *,
    task_id: str | None = None,
    countdown: float | None = None,
    producer: Any = None,
    ignore_result: bool = False,
) -> str:
    """Publish one task message (routed by the contract); returns its task id.

    ``ignore_result``: the worker stores neither a result nor a STARTED state for it (the
    message's header wins over the task's own setting)."""
    result = publisher().send_task(
        name,
        kwargs=kwargs,
        task_id=task_id,
        countdown=countdown,
        producer=producer,
        ignore_result=ignore_result,
        retry=True,
        retry_policy=RETRY_POLICY,
    )
    return str(result.id)


def send_many(
    messages: Iterable[tuple[str, dict[str, Any], str | None, float | None]],
    *,
    ignore_result: bool = False,
) -> int:
    """Publish (name, kwargs, task id, countdown) messages over one producer connection."""
    count = 0
    app = publisher()
    with app.producer_or_acquire() as producer:
        for name, kwargs, task_id, countdown in messages:
            send(
                name,
                kwargs,
                task_id=task_id,
                countdown=countdown,
                producer=producer,
                ignore_result=ignore_result,
            )
            count += 1
    return count

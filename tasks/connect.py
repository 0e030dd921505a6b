"""Interactive connect tasks: validate an API key, exchange an OAuth code.

Public contract (docs/tasks.md): keyword arguments, ids only; idempotent; a connection that
moved on (new key, disconnected) is left alone ("stale").
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from workers import activation
from workers.celery_app import app
from workers.pagerduty.errors import RateLimited, Transient

VALIDATE_MAX_RETRIES = 5


def _backoff(retries: int, cap: float = 60.0) -> float:
    # Full jitter: retries from many workspaces don't arrive at PagerDuty in step.
    return random.uniform(0, min(cap, 2.0 * 2**retries))


class _ConnectTask(app.Task):  # type: ignore[name-defined,misc]
    abstract = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Any terminal failure (a bug, a crash loop caught by the poison guard, a time limit)
        # still leaves the connection in a clear state instead of "validating" for ever.
        connection_id = kwargs.get("connection_id")
        if connection_id:
            activation.give_up(connection_id, kwargs.get("generation"))


@app.task(
    bind=True,
    base=_ConnectTask,
    name="pagerduty.validate_api_key",
    queue="interactive",
    ignore_result=False,
    soft_time_limit=60,
    time_limit=90,
    max_retries=VALIDATE_MAX_RETRIES,
    acks_late=True,
)
def validate_api_key(self: Task, *, connection_id: str, generation: int) -> dict[str, Any]:
    try:
        return activation.validate_api_key(connection_id, generation).as_dict()
    except RateLimited as exc:
        if self.request.retries >= VALIDATE_MAX_RETRIES:
            return activation.give_up(connection_id, generation).as_dict()
        raise self.retry(
            countdown=exc.reset_after or _backoff(self.request.retries),
            exc=Transient("rate limited"),
        ) from None
    except (Transient, SoftTimeLimitExceeded):
        if self.request.retries >= VALIDATE_MAX_RETRIES:
            return activation.give_up(connection_id, generation).as_dict()
        raise self.retry(
            countdown=_backoff(self.request.retries), exc=Transient("PagerDuty unreachable")
        ) from None


@app.task(
    name="pagerduty.exchange_oauth_code",
    queue="interactive",
    ignore_result=False,
    # The code dies 30 seconds after PagerDuty issued it: fail fast, never retry.
    soft_time_limit=25,
    time_limit=40,
    max_retries=0,
    acks_late=True,
)
def exchange_oauth_code(*, authorization_id: str) -> dict[str, Any]:
    return activation.exchange_oauth_code(authorization_id).as_dict()

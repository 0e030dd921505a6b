"""The Celery application and the task base every task uses."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_process_init

from workers.core.logging import bind_task_context, configure_logging, unbind_task_context
from workers.core.redis import client as redis_client
from workers.core.settings import get_settings

log = logging.getLogger(__name__)

TASK_MODULES = ["tasks.health", "tasks.connect", "tasks.tokens", "tasks.sync", "tasks.disconnect"]


class PoisonMessage(Exception):
    """A message redelivered more times than allowed; it is acknowledged and not run again."""


class RRPDTask(Task):
    """Base for every task: log context, a guard against poison messages.

    Tasks stay thin: they load ids, call a plain function that opens one transaction per unit
    of work (``workers.core.db.transaction``), and decide about retries.
    """

    abstract = True
    typing = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        bind_task_context(
            task_id=request.id,
            task_name=self.name,
            connection_id=kwargs.get("connection_id"),
            workspace_id=kwargs.get("workspace_id"),
        )
        try:
            if request.id and not request.called_directly:
                self._check_deliveries(request)
            return super().__call__(*args, **kwargs)
        finally:
            unbind_task_context()

    def _check_deliveries(self, request: Any) -> None:
        from celeryconfig import MAX_DELIVERIES, VISIBILITY_TIMEOUT

        key = f"{get_settings().redis_key_prefix}:deliveries:{request.id}:{request.retries}"
        try:
            count = int(redis_client().incr(key))
            if count == 1:
                redis_client().expire(key, VISIBILITY_TIMEOUT * (MAX_DELIVERIES + 1))
        except redis.RedisError:
            return  # The guard is for efficiency; never fail a task because it is unavailable.
        if count > MAX_DELIVERIES:
            log.error("poison message: delivered %s times, giving up", count)
            raise PoisonMessage(
                f"task {self.name} was delivered {count} times without finishing; "
                "it has been dropped (see the worker logs for the crash)"
            )


def create_app() -> Celery:
    # Task modules are imported when the worker starts (``include``), not here, because they
    # import this module for ``app``.
    app = Celery("rrpd", task_cls=RRPDTask, include=TASK_MODULES)
    app.config_from_object("celeryconfig")
    return app


@worker_process_init.connect
def _configure_child_logging(**_: Any) -> None:
    # The child's sockets (database pool, Redis, HTTP) were already forgotten by the fork hook
    # (workers.core.process); its log handlers are set up here.
    configure_logging()


app = create_app()

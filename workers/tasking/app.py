"""The Celery application, the task bases (one per retry family) and ``contract_task``.

Every task is declared in ``workers.tasking.contract`` and decorated with
``@contract_task(SPEC)``: name, queue, limits, retries and the task base all come from the
table, and the decorated function must take exactly the declared keyword arguments.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn, TypeVar

import redis
from celery import Celery, Task
from celery.signals import before_task_publish, task_failure, worker_process_init

from workers.core import metrics
from workers.core.logging import bind_task_context, configure_logging, unbind_task_context
from workers.core.outages import is_database_outage, is_transient_database_error
from workers.core.redis import client as redis_client
from workers.core.settings import get_settings
from workers.tasking.checks import Refused, refusal, uuid_text
from workers.tasking.contract import (
    BY_NAME,
    RETRY_POLICIES,
    TASKS,
    Family,
    RetryPolicy,
    TaskSpec,
)

log = logging.getLogger(__name__)

# Imported by the worker at start-up (``include``), not here: they import this module.
TASK_MODULES = sorted({spec.module for spec in TASKS})
# ... and what runs beside the tasks in every worker node (they register background loops and
# signal handlers): the intake of tasks other services send by name to Celery's default queue,
# the return of what a dead node held, the outbox relay, the scheduled handoffs, the deadlines
# of connections waiting for a task.
WORKER_MODULES = [
    "workers.tasking.intake",
    "workers.tasking.redelivery",
    "workers.outbox",
    "workers.handoffs",
    "workers.deadlines",
]


# Every task rides out a PostgreSQL outage: about 7 minutes of retries (0-1 s, 0-2 s, ... capped
# at 60 s, with full jitter), whatever the task's own retry family says about PagerDuty errors.
# The retry count is the message's, shared with the family's own retries.
DATABASE_OUTAGE_RETRY = RetryPolicy(base=1.0, cap=60.0, retried="PostgreSQL outages")
DATABASE_OUTAGE_MAX_RETRIES = 12


class PoisonMessage(Exception):
    """A message redelivered more times than allowed; it is acknowledged and not run again."""


class RRPDTask(Task):  # type: ignore[misc]
    """Base for every task: log context, a guard against poison messages, the retry policy.

    Tasks stay thin: they load ids, call a plain function that opens one transaction per unit
    of work (``workers.core.db.transaction``), and decide about retries with ``retry_later``.
    """

    typing = True
    family: ClassVar[Family] = Family.ONCE

    @property
    def retry_policy(self) -> RetryPolicy | None:
        return RETRY_POLICIES[self.family]

    @property
    def retries_left(self) -> bool:
        return bool(self.request.retries < (self.max_retries or 0))

    def retry_countdown(self, *, reset_after: float | None = None) -> float:
        """Seconds before the next attempt under this family's policy."""
        policy = self.retry_policy
        if policy is None:
            raise RuntimeError(f"{self.name} ({self.family}) does not retry")
        return policy.countdown(
            self.request.retries, reset_after=reset_after if policy.honours_reset else None
        )

    def retry_later(
        self,
        *,
        exc: BaseException | None = None,
        reset_after: float | None = None,
        before: Callable[[float], object] | None = None,
    ) -> NoReturn:
        """Retry under the family's policy (Celery's ``retry``, which raises). ``before`` is
        called with the countdown first (a task pushes its connection's deadline past it)."""
        countdown = self.retry_countdown(reset_after=reset_after)
        if before is not None:
            before(countdown)
        raise self.retry(countdown=countdown, exc=exc)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        spec = BY_NAME.get(self.name)
        refused: str | None = None
        if spec is not None:
            # The contract checks every message, whoever sent it: a malformed one is refused in
            # words (its result says what was wrong), acknowledged and never retried.
            try:
                kwargs, args = spec.check_message(args, kwargs), ()
            except Refused as exc:
                refused = str(exc)
        bind_task_context(
            task_id=request.id,
            task_name=self.name,
            connection_id=_trusted_id(kwargs.get("connection_id")),
            workspace_id=_trusted_id(kwargs.get("workspace_id")),
        )
        try:
            if refused is not None:
                log.warning("refused %s: %s", self.name, refused, extra={"refused": refused})
                return refusal(self.name, refused)
            if request.id and not request.called_directly:
                self._check_deliveries(request)
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if request.called_directly or not is_transient_database_error(exc):
                raise  # a bug (a SQL error of ours included) fails the task with its real error
            # The database is away, or broke a deadlock: the unit of work rolled back whole (or
            # never began), so it is tried again later. Celery publishes the retry before it
            # acks this delivery, so the work is never lost in between.
            if request.retries >= DATABASE_OUTAGE_MAX_RETRIES:
                raise  # spent: the task fails with its real error (no backoff drawn for nothing)
            why = "database unavailable" if is_database_outage(exc) else "database conflict"
            log.warning("%s (%s); retrying", why, type(exc).__name__)
            raise self.retry(
                exc=exc,
                countdown=DATABASE_OUTAGE_RETRY.countdown(request.retries),
                max_retries=DATABASE_OUTAGE_MAX_RETRIES,
            ) from None
        finally:
            unbind_task_context()

    def _check_deliveries(self, request: Any) -> None:
        from celeryconfig import MAX_DELIVERIES, VISIBILITY_TIMEOUT

        key = f"{get_settings().redis_key_prefix}:deliveries:{request.id}:{request.retries}"
        try:
            # One round trip: the counter is created with its expiry on the first delivery
            # (SET NX), then counted; a later delivery's SET NX is a no-op and keeps the TTL.
            pipe = redis_client().pipeline(transaction=False)
            pipe.set(key, 0, ex=VISIBILITY_TIMEOUT * (MAX_DELIVERIES + 1), nx=True)
            pipe.incr(key)
            count = int(pipe.execute()[1])
        except redis.RedisError:
            return  # The guard is for efficiency; never fail a task because it is unavailable.
        if count > MAX_DELIVERIES:
            log.error("poison message: delivered %s times, giving up", count)
            raise PoisonMessage(
                f"task {self.name} was delivered {count} times without finishing; "
                "it has been dropped (see the worker logs for the crash)"
            )


def _trusted_id(value: Any) -> str | None:
    """An id for the log context only if it is one (a refused message may carry anything)."""
    try:
        return uuid_text("id", value) if value is not None else None
    except Refused:
        return None


class ConnectTask(RRPDTask):
    """Validating a credential and refreshing a token: a person may be waiting."""

    family = Family.CONNECT


class SyncTask(RRPDTask):
    family = Family.SYNC


class BeatTask(RRPDTask):
    """Fired by beat; never retried (the next round does the same work)."""

    family = Family.BEAT


TASK_BASES: dict[Family, type[RRPDTask]] = {
    base.family: base for base in (RRPDTask, ConnectTask, SyncTask, BeatTask)
}

F = TypeVar("F", bound=Callable[..., Any])


def _check_signature(spec: TaskSpec, fn: Callable[..., Any]) -> None:
    """The function takes ``self`` and exactly the contract's keyword-only arguments."""
    params = list(inspect.signature(fn).parameters.values())[1:]  # after ``self``
    got = {p.name: p for p in params}
    problems = [f"{p.name} is not keyword-only" for p in params if p.kind is not p.KEYWORD_ONLY]
    if set(got) != spec.kwarg_names():
        problems.append(f"takes {sorted(got)}, the contract says {sorted(spec.kwarg_names())}")
    for kwarg in spec.kwargs:
        param = got.get(kwarg.name)
        if param is None:
            continue
        default = None if kwarg.required else kwarg.default
        if (param.default is param.empty) != kwarg.required or (
            not kwarg.required and param.default != default
        ):
            problems.append(f"{kwarg.name}'s default differs from the contract")
    if fn.__module__ != spec.module:
        problems.append(f"is defined in {fn.__module__}, the contract says {spec.module}")
    if problems:
        raise TypeError(f"task {spec.name}: " + "; ".join(problems))


def contract_task(spec: TaskSpec, *, base: type[RRPDTask] | None = None) -> Callable[[F], Any]:
    """``app.task(...)`` with everything taken from the contract's ``spec``.

    ``base`` may refine the family's base class (e.g. to add ``on_failure``), never replace it.
    """
    family_base = TASK_BASES[spec.family]
    if base is not None and not issubclass(base, family_base):
        raise TypeError(f"task {spec.name}: {base.__name__} is not a {family_base.__name__}")

    def decorate(fn: F) -> Any:
        _check_signature(spec, fn)
        return app.task(
            bind=True,
            base=base or family_base,
            name=spec.name,
            queue=spec.queue,
            soft_time_limit=spec.soft_time_limit,
            time_limit=spec.time_limit,
            max_retries=spec.max_retries,
            acks_late=True,
            # A message's own ``ignore_result`` header wins (scheduled syncs are sent with it).
            ignore_result=not spec.store_result,
        )(fn)

    return decorate


def create_app() -> Celery:
    # Task modules are imported when the worker starts (``include``), not here, because they
    # import this module for ``app``.
    app = Celery("rrpd", task_cls=RRPDTask, include=[*TASK_MODULES, *WORKER_MODULES])
    app.config_from_object("celeryconfig")
    from workers.tasking.loops import LoopsStep

    app.steps["worker"].add(LoopsStep)
    return app


def _configure_child_logging(**_: Any) -> None:
    # The child's sockets (database pool, Redis, HTTP) were already forgotten by the fork hook
    # (workers.core.process); its log handlers are set up here.
    configure_logging()


worker_process_init.connect(_configure_child_logging, weak=False)


def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # When a message was sent (epoch seconds), so how long it waited in its queue can be told:
    # beat's rounds no longer expire, and an operator (or a test) can see a late one.
    if headers is not None:
        headers.setdefault("sent_at", round(time.time(), 3))


before_task_publish.connect(_stamp_sent_at, weak=False)


def _count_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    # Every task that ends failed (a bug, a SQL error of ours, retries spent), by task and error
    # class: a fan-out failing every round shows as a rising counter, not only in Flower.
    name = getattr(sender, "name", None) or "unknown"
    metrics.incr("rrpd_task_failures_total", task=name, error=type(exception).__name__)


task_failure.connect(_count_failure, weak=False)


app = create_app()

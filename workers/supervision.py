"""Beat and workers that ride out a Redis outage of any length by themselves.

Celery beat stops for good on the first Redis error, and RedBeat makes it worse in two ways
(measured in issue 13; celery 5.7, celery-redbeat 2.4, kombu 5.7):

- ``celery.beat.Service.start`` lets any exception out of ``scheduler.tick()``, and RedBeat's
  tick extends its lock first, so a Redis restart ends beat with ``redis.ConnectionError``
  (exit status 1). RedBeat's ``redbeat_redis_options["retry_period"]`` does not help: it wraps
  calls on the client only, not the lock the client hands out (sibson/redbeat PR #314, open).
- RedBeat takes its lock in a ``beat_init`` signal handler. Celery's signals log and swallow a
  receiver's exception, so a standby beat waiting for the lock when Redis goes away keeps
  running without one and dies on its next tick with ``AttributeError: 'NoneType' object has
  no attribute 'extend'`` — the HA pair dies together.
- A Redis restarted without its data (no AOF, or a new replica) has lost RedBeat's schedule:
  a scheduler that merely reconnected would tick forever over an empty schedule.

So ``rrpd beat`` runs :class:`SupervisedBeat`: when a scheduler stops on a Redis error it is
built again from scratch (which writes the static schedule back) after a capped, jittered
backoff, until Redis answers; its lock is taken inside ``tick`` where errors propagate
(:class:`SupervisedRedBeatScheduler`). Any other exception is a bug and still ends the process.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from typing import Any, ClassVar

import redis.exceptions
from celery.apps.beat import Beat
from celery.beat import Scheduler
from celery.signals import beat_init
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    acquire_distributed_beat_lock,
    get_redis,
)

from workers.outages import REDIS_OUTAGE_ERRORS

log = logging.getLogger("celery.beat")

# What ends one scheduler but not beat: Redis gone or restarted (connection refused, reset,
# timed out, LOADING, a read-only replica after a failover), and the lock lost meanwhile
# (LockNotOwnedError: it expired, or Redis came back without it, possibly taken by the other
# beat). OSError covers a socket error that reached us unwrapped.
BEAT_RECOVERABLE: tuple[type[BaseException], ...] = (
    *REDIS_OUTAGE_ERRORS,
    redis.exceptions.LockError,
    OSError,
)


class Backoff:
    """Capped exponential backoff with jitter: 1 s, 2 s, 4 s ... up to ``cap`` seconds."""

    def __init__(self, cap: float, first: float = 1.0, rng: random.Random | None = None) -> None:
        self.cap = cap
        self.first = min(first, cap)
        self.attempt = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        # Equal jitter: never a tight loop, and two beats restarted together drift apart.
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class SupervisedRedBeatScheduler(RedBeatScheduler):
    """RedBeat with its lock taken in ``tick``, so a failure to take it is seen, not swallowed.

    - The lock is taken (waiting, as a standby, while the other beat holds it) before the
      first tick sends anything, and the holder writes the static schedule back right after
      taking it: Redis may have come back without it.
    - ``held_token`` survives the scheduler: one started again after an outage takes its own
      lock straight back if Redis kept it (AOF), instead of waiting for it to expire
      (``redbeat_lock_timeout``, 5 minutes by default) while nobody sends anything.
    - ``close`` releases the lock if Redis answers; if not, the lock simply expires.
    """

    held_token: ClassVar[bytes | None] = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self.lock_key and self.lock is None:
            self._take_lock()
        return float(super().tick(*args, **kwargs))

    def _take_lock(self) -> None:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # RedBeat's own extend script: extend *to* the timeout, not by it (RedBeat issue #127).
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        token = type(self).held_token
        if token is not None:
            lock.local.token = token
            if lock.owned():
                lock.extend(int(self.lock_timeout))
                log.info("beat: Redis kept this beat's lock; holding it again")
            else:
                lock.local.token = None
                token = None
        if token is None:
            holder = client.get(self.lock_key)
            if holder is not None:
                log.info("beat: another beat holds the lock; waiting for it (standby)")
            lock.acquire()
            log.info("beat: Acquired lock")
        type(self).held_token = lock.local.token
        self.lock = lock
        # Redis may have restarted without RedBeat's keys: the holder puts the static entries
        # back (keeping any last run Redis still has) before it sends anything.
        self.setup_schedule()

    def close(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            try:
                if lock.owned():
                    lock.release()
                    log.info("beat: Released lock")
                type(self).held_token = None
            except BEAT_RECOVERABLE as exc:
                log.warning(
                    "beat: could not release the lock (%s: %s); it expires within %s s",
                    type(exc).__name__,
                    exc,
                    self.lock_timeout,
                )
        # RedBeat's own close releases the lock too, without catching Redis errors; the base
        # scheduler's close releases the publishing connection.
        Scheduler.close(self)


class SupervisedBeat(Beat):
    """``celery beat`` that builds its scheduler again after a Redis error instead of exiting.

    SIGTERM and SIGINT still stop it (Celery's handler raises ``SystemExit``, which is not
    caught here); a scheduler that ran for a while resets the backoff.
    """

    def __init__(self, *args: Any, retry_max_seconds: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backoff = Backoff(retry_max_seconds)

    def start_scheduler(self) -> None:
        # The lock is taken by SupervisedRedBeatScheduler.tick, where a Redis error reaches
        # this loop; RedBeat's beat_init receiver would take it where the error is swallowed.
        beat_init.disconnect(acquire_distributed_beat_lock)
        first = True
        while True:
            service = self.Service(
                app=self.app,
                max_interval=self.max_interval,
                scheduler_cls=self.scheduler_cls,
                schedule_filename=self.schedule,
                remote_control=self.remote_control,
                hostname=self.hostname,
            )
            if first:
                first = False
                if not self.quiet:
                    print(self.banner(service))
                self.setup_logging()
                if self.socket_timeout:
                    socket.setdefaulttimeout(self.socket_timeout)
            self.install_sync_handler(service)
            started = time.monotonic()
            try:
                service.start()
                return  # stopped by a signal
            except BEAT_RECOVERABLE as exc:
                if time.monotonic() - started > 60:
                    self.backoff.reset()
                delay = self.backoff.next()
                log.warning(
                    "beat: Redis is unavailable (%s: %s); starting the scheduler again in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                time.sleep(delay)
            except Exception as exc:
                log.critical("beat raised exception %s: %r", exc.__class__, exc, exc_info=True)
                raise


def run_beat(app: Any, *, loglevel: str, retry_max_seconds: float) -> None:
    """What ``rrpd beat`` runs: ``celery beat`` with RedBeat, supervised as above."""
    SupervisedBeat(
        app=app,
        loglevel=loglevel,
        scheduler=f"{__name__}:SupervisedRedBeatScheduler",
        retry_max_seconds=retry_max_seconds,
    ).run()

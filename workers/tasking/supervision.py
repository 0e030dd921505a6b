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

The worker side is :class:`RRPDConsumer` (``worker_consumer`` in ``celeryconfig``).
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import time
from typing import Any, ClassVar

import redis.exceptions
from celery.apps.beat import Beat
from celery.beat import Scheduler
from celery.signals import beat_init
from celery.worker.consumer import Consumer
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    acquire_distributed_beat_lock,
    get_redis,
)

from workers.core.outages import REDIS_OUTAGE_ERRORS
from workers.core.settings import get_settings

log = logging.getLogger("celery.beat")
worker_log = logging.getLogger("celery.worker.consumer")

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


class SupervisedRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
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

    def update_from_dict(self, dict_: dict[str, Any]) -> None:
        # RedBeat saves an entry Redis does not have with last_run_at = now (Celery's
        # ScheduleEntry default), so it first runs one period later. After Redis lost its data
        # that would hold the sync fan-out back a minute and the token and validation sweep
        # five; an entry new to Redis is due at once instead (both tasks are idempotent).
        client = get_redis(self.app)
        new = {name for name in dict_ if not client.exists(self.Entry.generate_key(self.app, name))}
        super().update_from_dict(dict_)
        for name in new:
            key = self.Entry.generate_key(self.app, name)
            try:
                entry = self.Entry.from_key(key, app=self.app)
            except KeyError:  # RedBeat refused the definition and logged why
                continue
            entry.last_run_at = None
            client.hdel(key, "meta")  # save() writes meta only where there is none
            entry.save()

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


class SupervisedBeat(Beat):  # type: ignore[misc]
    """``celery beat`` that builds its scheduler again after a Redis error instead of exiting.

    SIGTERM and SIGINT still stop it (Celery's handler raises ``SystemExit``, which is not
    caught here); a scheduler that ran for a while resets the backoff.
    """

    def __init__(self, *args: Any, retry_max_seconds: float = 5.0, **kwargs: Any) -> None:
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


# --- workers ------------------------------------------------------------------------------------


class RRPDConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, surviving a broker connection lost while it holds messages.

    On a connection error Celery's ``on_connection_error_after_connected`` first calls
    ``connection.collect()``, which sets the kombu transport's ``client`` to None, and then
    ``connection.close()``, which closes the channel, whose QoS hands the unacknowledged
    messages back to Redis. kombu's Redis QoS needs ``transport.client`` for that
    (``Channel._connparams``: ``self.connection.client.hostname``), so with any message held —
    an ETA task (every jittered sync, every retry countdown), or a late-acked task in flight —
    the worker dies with ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (an
    "unrecoverable error", exit status 0). Same family as celery/kombu#582 and #970.

    And the hand-back could not work at that moment anyway: Redis is gone. So the held
    messages are taken out of the QoS before Celery's handling runs (which then finds nothing
    to restore), and handed back once the consumer is connected again: each is pushed back
    onto its queue from Redis's unacked hash, where kombu keeps every delivered message until
    it is acknowledged. If Redis kept its data (AOF), the work goes on seconds after Redis is
    back instead of after the visibility timeout (20 minutes); if Redis lost it, there is
    nothing to hand back and beat's sweeps recover the work from PostgreSQL.
    """

    _held_tags: list[str] | None = None

    def ensure_connected(self, conn: Any) -> Any:
        # Celery lets kombu pick the pauses between connection attempts: 2 s, 4 s, 6 s ... 30 s.
        # After a long outage a worker would come back up to 30 s after Redis did, and an OAuth
        # code (it lives 30 s) queued meanwhile would die waiting. Pauses of 1 s, 2 s ... up to
        # RRPD_REDIS_RETRY_MAX_SECONDS instead; an attempt is one TCP connect.
        cap = get_settings().redis_retry_max_seconds
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=1, interval_step=1, interval_max=cap
        )
        try:
            return super().ensure_connected(conn)
        finally:
            del conn.ensure_connection  # the class's method again

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        held = take_unacked(self.connection)
        if held:
            worker_log.warning(
                "connection lost while holding %d unacknowledged message(s); they go back to "
                "their queue once Redis answers again",
                len(held),
            )
            self._held_tags = [*(self._held_tags or ()), *held]
        super().on_connection_error_after_connected(exc)

    def connect(self) -> Any:
        conn = super().connect()
        if self._held_tags:
            self._held_tags = hand_back(conn, self._held_tags)
        return conn


def take_unacked(connection: Any) -> list[str]:
    """The delivery tags of every message the connection's channels hold, forgotten locally."""
    transport = getattr(connection, "_transport", None) if connection is not None else None
    if transport is None:
        return []
    channels = [*getattr(transport, "channels", ()), *getattr(transport, "_avail_channels", ())]
    tags: list[str] = []
    for channel in channels:
        qos = getattr(channel, "_qos", None)
        if qos is None:
            continue
        qos._flush()  # drop what was acknowledged meanwhile
        tags += list(qos._delivered)
        qos._delivered.clear()
        # Nothing left to restore: this marks the QoS restored and cancels its finalizer, so
        # neither the channel's close nor garbage collection tries again without a client.
        qos.restore_unacked_once()
        # A task still running goes on after the loss (Celery may fail to stop it: stopping
        # marks the result in Redis) and then acks, or rejects on the worker lost, through
        # this dead channel, which again needs the client that is gone: the same
        # AttributeError, from the event loop. Its message is among those handed back, so
        # those acks and rejects have nothing left to do.
        setattr(qos, "ack", _settled)  # noqa: B010 - instance attribute over the method
        setattr(qos, "reject", _settled)  # noqa: B010
    return tags


def _settled(delivery_tag: str, *_: Any, **__: Any) -> None:
    worker_log.info(
        "message %s was held when the connection was lost; it is handed back, not acked",
        delivery_tag,
    )


def hand_back(conn: Any, tags: list[str]) -> list[str]:
    """Push the held messages back onto their queues; return the tags still to hand back."""
    qos = conn.default_channel.qos
    found = 0
    for n, tag in enumerate(tags):
        try:
            with qos.channel.conn_or_acquire() as client:
                # HGET, not HEXISTS: kombu adds its key prefix to a fixed list of commands.
                found += client.hget(qos.unacked_key, tag) is not None
            # One WATCH/MULTI transaction per message: moved from the unacked hash to its
            # queue if Redis still has it (another worker's visibility sweep may have done it
            # already), dropped from the indices either way.
            qos.restore_by_tag(tag)
        except Exception as exc:
            worker_log.warning(
                "could not hand %d held message(s) back yet (%s: %s); trying again on the next "
                "connection",
                len(tags) - n,
                type(exc).__name__,
                exc,
            )
            return tags[n:]
    worker_log.warning(
        "handed %d of %d message(s) held across the outage back to their queue%s",
        found,
        len(tags),
        "" if found == len(tags) else "; Redis came back without the others",
    )
    return []

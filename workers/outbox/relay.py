"""The relay: publish committed outbox rows, in id order per lane, then mark them published.

One round for one lane (``relay_lane``), in one short transaction:

1. become the lane's only relay for this transaction: ``pg_try_advisory_xact_lock`` on
   PostgreSQL (a lock file on SQLite, the local run); another relay that holds it is already
   doing the work, so this round ends at once;
2. read up to ``RRPD_OUTBOX_BATCH`` unpublished rows of the lane, oldest id first;
3. publish them in that order - task rows as Celery messages under the row's task id
   (``workers.outbox.publisher``), event rows to the Redis stream (``workers.outbox.event_stream``);
4. mark what was published (``published_at``); on the first failure stop, count the attempt
   on that row with its error, and leave it and everything after it for the next round.

A relay killed between 3 and 4 rolls its transaction back: the rows stay unpublished and are
published again by the next round - duplicates, never losses, and a duplicate carries the same
task id or event id. One relay per lane at a time keeps each key's events in order.

Who runs rounds: the *fast path* (``workers.outbox.fastpath``), a daemon thread in every
process that writes to the outbox, woken after each commit that wrote rows, so a task reaches
Redis milliseconds after its commit and the writer never waits on Redis; and the
``outbox-relay`` background loop of every worker node (``workers.tasking.loops``), which polls
every ``RRPD_OUTBOX_POLL_SECONDS`` and publishes whatever the fast path could not (Redis was
down, the process died).
The ``outbox-retention`` loop deletes published rows after their retention, in batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

import workers.outbox.event_stream as stream
import workers.outbox.publisher as publisher
from models import OutboxKind, OutboxMessage, utcnow
from workers.core.db import affected_rows, transaction
from workers.core.settings import get_settings
from workers.outbox.lanes import EVENTS_LANE, LANES

__all__ = [
    "LANES",
    "RelayLoop",
    "Round",
    "backlog",
    "delete_published",
    "relay_all",
    "relay_lane",
    "retention_step",
]

log = logging.getLogger(__name__)

# Advisory lock keys: (RRPD, crc32 of the lane name).
_LOCK_CLASS = 0x52525044


def lock_key(lane: str) -> tuple[int, int]:
    return _LOCK_CLASS, zlib.crc32(f"outbox:{lane}".encode()) & 0x7FFFFFFF


@dataclass
class Round:
    lane: str
    published: int = 0
    # Another relay held the lane: it is doing this work right now.
    busy: bool = False
    # A full batch was published: more rows may be waiting.
    full: bool = False
    error: str | None = None


@contextlib.contextmanager
def _leadership(session: Session, lane: str) -> Iterator[bool]:
    if session.get_bind().dialect.name == "postgresql":
        classid, objid = lock_key(lane)
        got = session.execute(
            text("SELECT pg_try_advisory_xact_lock(:c, :o)"), {"c": classid, "o": objid}
        ).scalar_one()
        yield bool(got)
        return
    # SQLite (the local run): no advisory locks; a lock file per lane does the same between
    # the local processes.
    path = get_settings().var_dir / f"outbox-{lane}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _countdown(row: Any, now: datetime) -> float | None:
    countdown = row.payload.get("countdown")
    if not countdown:
        return None
    # Relayed late (Redis was down): the task is due when it was due, not a countdown later.
    remaining = (row.created_at + timedelta(seconds=float(countdown)) - now).total_seconds()
    return round(remaining, 3) if remaining > 0.05 else None


def _publish(lane: str, rows: list[Any]) -> tuple[list[int], str | None]:
    """Publish ``rows`` in order; (ids published, error of the first failure or None)."""
    done: list[int] = []
    try:
        if lane == EVENTS_LANE:
            stream.append((row.payload, row.ordering_key) for row in rows)
            return [row.id for row in rows], None
        now = utcnow()
        with publisher.publisher().producer_or_acquire() as producer:
            for row in rows:
                publisher.send(
                    row.name,
                    row.payload["kwargs"],
                    task_id=row.payload["task_id"],
                    countdown=_countdown(row, now),
                    producer=producer,
                )
                done.append(row.id)
    except Exception as exc:
        return done, f"{type(exc).__name__}: {exc}"[:500]
    return done, None


def relay_lane(lane: str, *, batch: int | None = None) -> Round:
    """One round for ``lane`` (see the module docstring)."""
    batch = batch or get_settings().outbox_batch
    out = Round(lane)
    with transaction() as session, _leadership(session, lane) as leader:
        if not leader:
            out.busy = True
            return out
        rows = session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.kind,
                OutboxMessage.name,
                OutboxMessage.ordering_key,
                OutboxMessage.payload,
                OutboxMessage.created_at,
            )
            .where(OutboxMessage.lane == lane, OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(batch)
        ).all()
        if not rows:
            return out
        done, error = _publish(lane, list(rows))
        if done:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(done))
                .values(published_at=utcnow(), attempts=OutboxMessage.attempts + 1)
                .execution_options(synchronize_session=False)
            )
        if error is not None:
            failed = rows[len(done)].id
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == failed)
                .values(attempts=OutboxMessage.attempts + 1, last_error=error)
                .execution_options(synchronize_session=False)
            )
        out.published, out.error = len(done), error
        out.full = error is None and len(rows) == batch
    if out.error:
        log.warning(
            "outbox: %s publish failed, %d row(s) wait: %s", lane, len(rows) - len(done), error
        )
    return out


def relay_all(*, batch: int | None = None) -> list[Round]:
    return [relay_lane(lane, batch=batch) for lane in LANES]


# --- the loop every worker node runs ---------------------------------------------------------


class RelayLoop:
    """The ``outbox-relay`` loop's rounds: every lane, then sleep (longer after failures)."""

    def __init__(self) -> None:
        self.failures = 0

    def step(self) -> float:
        rounds = relay_all()
        if any(r.error for r in rounds):
            self.failures += 1
            return float(min(10.0, 0.5 * 2**self.failures))
        self.failures = 0
        if any(r.full for r in rounds):
            return 0.0
        return get_settings().outbox_poll_seconds


RETENTION_BATCH = 5_000


def delete_published(now: datetime | None = None, *, batch: int = RETENTION_BATCH) -> int:
    """Delete one batch of published rows past their retention; returns how many."""
    settings = get_settings()
    now = now or utcnow()
    task_cutoff = now - timedelta(hours=settings.outbox_task_retention_hours)
    event_cutoff = now - timedelta(days=settings.events_retention_days)
    expired = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.published_at.is_not(None),
            ((OutboxMessage.kind == OutboxKind.TASK) & (OutboxMessage.published_at < task_cutoff))
            | (
                (OutboxMessage.kind == OutboxKind.EVENT)
                & (OutboxMessage.published_at < event_cutoff)
            ),
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with transaction() as session:
        return affected_rows(
            session.execute(
                delete(OutboxMessage)
                .where(OutboxMessage.id.in_(expired))
                .execution_options(synchronize_session=False)
            )
        )


def retention_step() -> float:
    return 0.0 if delete_published() >= RETENTION_BATCH else 60.0


def backlog() -> dict[str, dict[str, Any]]:
    """Per lane: unpublished rows, the oldest one's age, and the last error (operators)."""
    now = utcnow()
    out: dict[str, dict[str, Any]] = {
        lane: {"unpublished": 0, "oldest_seconds": None, "last_error": None} for lane in LANES
    }
    with transaction() as session:
        for lane, count, oldest in session.execute(
            select(OutboxMessage.lane, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.published_at.is_(None))
            .group_by(OutboxMessage.lane)
        ):
            entry = out.setdefault(lane, {"last_error": None})
            entry["unpublished"] = int(count)
            entry["oldest_seconds"] = round((now - oldest).total_seconds(), 1) if oldest else None
        for lane, error in session.execute(
            select(OutboxMessage.lane, OutboxMessage.last_error)
            .where(OutboxMessage.published_at.is_(None), OutboxMessage.last_error.is_not(None))
            .order_by(OutboxMessage.id)
        ):
            out.setdefault(lane, {})["last_error"] = error
    return out

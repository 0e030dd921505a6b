"""Beat's fan-out: every connected connection that is due gets a sync, spread over a window.

The syncs are published directly once the claim has committed, not through the outbox: a
scheduled sync is periodic, not caused by a change, and one that Redis loses is simply due
again an interval later (the outbox would add a row per connection per minute for nothing).

Cadence: a claimed connection's ``next_sync_at`` advances from its previous value by whole
intervals (never from the moment the round happened to run), and a round picks what falls due
within ``PICK_TOLERANCE`` of it. A round that starts a few milliseconds after (or before) its
tick therefore finds every connection it should: before, ``now + interval`` drifted each
connection's due time past the next tick, and a third of rounds found nothing due.

Spread: each sync is published with a countdown in ``[0, RRPD_SYNC_JITTER_SECONDS)`` so a fleet
is not synced in one burst. The countdown is the connection's own, fixed (from its id), not a
fresh draw each round: with a fresh draw one connection's gaps ranged over interval ± jitter
(40-80 s at the defaults), so a change made in PagerDuty could wait up to interval + jitter to
show. A fixed offset keeps every gap one interval and the fleet just as evenly spread (ids are
random UUIDs).

Sharding: no task publishes more than ``SHARD_CAP`` messages. The beat round counts what is due;
if that is more than the cap it publishes shard tasks (``shard``/``shards``), each claiming the
due connections in its slice of the id space; a shard that hits the cap publishes itself again.
Any node consuming the ``schedule`` queue runs shards. The claim (``FOR UPDATE SKIP LOCKED``, then
the due times advanced in the same transaction) is the only guard: a second round, or a repeated
shard, finds nothing due.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update

from models import ConnectionStatus, PagerDutyConnection, utcnow
from workers.core import metrics
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.tasking.contract import CHECK_CONNECTIONS, MAX_CHECK_BATCH, SCHEDULE_SYNCS
from workers.tasking.enqueue import publish_many

# At most this many sync messages from any one task (a beat round or a shard).
SHARD_CAP = 2_000
# A round splits into shards of about this many due connections (headroom under the cap for
# connections that fall due between the count and the shard's claim).
SHARD_TARGET = 1_000
# Beat's rounds arrive a few ms late (or early, on a skewed clock); what is due this soon is
# this round's. Kept well under the interval so a connection is never due twice in one.
MAX_TOLERANCE_SECONDS = 5.0

_ID_SPACE = 1 << 128


def pick_tolerance(interval: float) -> float:
    return min(MAX_TOLERANCE_SECONDS, interval / 10)


def _slice(shard: int, shards: int) -> ColumnElement[bool] | None:
    """The ids of shard ``shard`` of ``shards``: a contiguous UUID range (the primary key's
    index), ids being random UUIDs so the slices are about equal."""
    if shards <= 1:
        return None
    lo = uuid.UUID(int=shard * _ID_SPACE // shards)
    cond = PagerDutyConnection.id >= lo
    if shard < shards - 1:
        cond = cond & (PagerDutyConnection.id < uuid.UUID(int=(shard + 1) * _ID_SPACE // shards))
    return cond


def _due(now: datetime, interval: float) -> ColumnElement[bool]:
    horizon = now + timedelta(seconds=pick_tolerance(interval))
    return (PagerDutyConnection.status == ConnectionStatus.CONNECTED) & or_(
        PagerDutyConnection.next_sync_at.is_(None), PagerDutyConnection.next_sync_at <= horizon
    )


def next_due(previous: datetime | None, now: datetime, interval: float) -> datetime:
    """The previous due time advanced by the whole intervals that take it past the pick horizon
    (a connection never synced, or re-connected, starts from now)."""
    base = previous or now
    behind = (now - base).total_seconds() + pick_tolerance(interval)
    steps = math.floor(behind / interval) + 1
    return base + timedelta(seconds=steps * interval)


def claim(
    now: datetime, *, shard: int = 0, shards: int = 1, limit: int = SHARD_CAP
) -> list[uuid.UUID]:
    """Claim (and advance) up to ``limit`` due connections of the slice, in one transaction.

    Two statements, the same on PostgreSQL and SQLite: the due rows read under ``FOR UPDATE
    SKIP LOCKED`` (a concurrent round or shard skips them; on SQLite a unit of work takes the one
    write lock before it reads, so a second claim waits and then finds nothing due), then each row's
    next due time, computed here, written by primary key in one executemany. Date arithmetic
    stays in Python: SQL has no portable way to add an interval to a timestamp (the previous
    ``make_interval`` was PostgreSQL's alone, and the local run's fan-out failed on SQLite).
    """
    interval = float(get_settings().sync_interval_seconds)
    due = _due(now, interval)
    where = due if (part := _slice(shard, shards)) is None else due & part
    with transaction() as session:
        picked = session.execute(
            select(PagerDutyConnection.id, PagerDutyConnection.next_sync_at)
            .where(where)
            .order_by(PagerDutyConnection.next_sync_at.asc().nulls_first())
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if picked:
            session.execute(
                update(PagerDutyConnection).execution_options(synchronize_session=False),
                [
                    {"id": cid, "next_sync_at": next_due(previous, now, interval)}
                    for cid, previous in picked
                ],
            )
    return [cid for cid, _ in picked]


# A connected connection whose scheduled sync is this many intervals late has no working
# fan-out behind it (beat stopped, or every round fails): `rrpd attention` and the
# rrpd_connections_sync_overdue gauge say so.
OVERDUE_INTERVALS = 3


def overdue(now: datetime) -> ColumnElement[bool]:
    """Connected connections the fan-out should have synced ``OVERDUE_INTERVALS`` ago: due long
    since, or never claimed by it although connected that long (the first scheduled sync
    follows the activation's)."""
    late = now - timedelta(seconds=OVERDUE_INTERVALS * float(get_settings().sync_interval_seconds))
    return (PagerDutyConnection.status == ConnectionStatus.CONNECTED) & or_(
        PagerDutyConnection.next_sync_at < late,
        PagerDutyConnection.next_sync_at.is_(None) & (PagerDutyConnection.status_changed_at < late),
    )


def count_due(now: datetime) -> int:
    interval = float(get_settings().sync_interval_seconds)
    with transaction() as session:
        found = session.scalar(
            select(func.count()).select_from(PagerDutyConnection).where(_due(now, interval))
        )
    return int(found or 0)


def schedule_syncs(
    now: datetime | None = None,
    *,
    shard: int = 0,
    shards: int = 0,
    cap: int = SHARD_CAP,
    target: int = SHARD_TARGET,
) -> dict[str, int]:
    """One beat round (``shards == 0``) or one shard of it; never publishes more than ``cap``.

    Returns ``{enqueued, batches, shards}``: the connections this task claimed, the batch
    messages it published for them (``pagerduty.check_connections``), and the shard tasks it
    published (0 when it claimed the round itself).
    """
    if shards and shard >= shards:
        return {"enqueued": 0, "batches": 0, "shards": 0}  # not a slice: nothing to claim
    t0 = time.monotonic()
    now = now or utcnow()
    published_shards = 0
    enqueued = batches = 0
    if shards == 0 and (due := count_due(now)) > cap:
        published_shards = max(2, math.ceil(due / target))
        publish_many(
            SCHEDULE_SYNCS,
            [({"shard": i, "shards": published_shards}, None) for i in range(published_shards)],
        )
    else:
        ids = claim(now, shard=shard, shards=max(shards, 1), limit=cap)
        batches = _publish_checks(ids)
        enqueued = len(ids)
        if len(ids) >= cap and shards:
            # More of this slice is due than one task may publish: the rest is this shard's
            # next message (a beat round that hit the cap leaves the rest to the next round,
            # which the count above makes rare).
            publish_many(SCHEDULE_SYNCS, [({"shard": shard, "shards": shards}, None)])
            published_shards = 1
    metrics.incr_many(
        [
            ("rrpd_fanout_runs_total", 1, {"role": "shard" if shards else "round"}),
            ("rrpd_fanout_enqueued_total", enqueued, {}),
            ("rrpd_fanout_duration_seconds_sum", time.monotonic() - t0, {}),
            ("rrpd_fanout_duration_seconds_count", 1, {}),
        ]
    )
    return {"enqueued": enqueued, "batches": batches, "shards": published_shards}


def spread_offset(connection_id: uuid.UUID, jitter: float) -> float:
    """The connection's fixed place in the spread window, in seconds: ``[0, jitter)``."""
    return jitter * connection_id.int / _ID_SPACE


def _publish_checks(ids: list[uuid.UUID]) -> int:
    """Publish the claimed connections in batches of ``RRPD_CHECK_BATCH_SIZE``
    (``pagerduty.check_connections``); returns how many batch messages.

    The batches follow the spread: ids are ordered by their fixed offset and each batch is
    published with its first connection's countdown, so a batch holds connections whose
    offsets are neighbours and the fleet stays spread over the window."""
    settings = get_settings()
    jitter = max(0.0, float(settings.sync_jitter_seconds))
    size = max(1, min(settings.check_batch_size, MAX_CHECK_BATCH))
    ordered = sorted(ids, key=lambda cid: cid.int)  # the offset grows with the id
    # Published once the claim has committed (never for a claim that rolled back), through one
    # producer.
    return publish_many(
        CHECK_CONNECTIONS,
        [
            (
                {"connection_ids": [str(cid) for cid in chunk]},
                spread_offset(chunk[0], jitter) or None,
            )
            for chunk in (ordered[i : i + size] for i in range(0, len(ordered), size))
        ],
    )

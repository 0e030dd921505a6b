"""Scheduled checks in batches: many due connections, one unit of work, a few statements.

``check_connections`` is what the beat fan-out's batch message runs (``pagerduty.
check_connections``). It reads as its stages, each once for the whole batch:

1. **lease**: every connection's ``sync:<id>`` lease in one Redis pipeline; a connection whose
   lease is held elsewhere is being synced right now, which covers this check: skipped.
2. **plan** (``workers.sync.batch_plan``): five statements; each connection is routed to the
   batch's check, to the single pass (directory due, "sync now" pending, token to refresh), or
   nowhere (no longer connected).
3. **read**: the checks' PagerDuty reads in flight together on a bounded thread pool (each
   connection keeps its own rate limiter key ``conn-<id>``; the HTTP pool is the process's);
   the single passes run on the same pool.
4. **decide**: in memory. The check compared PagerDuty's "now" with the stored timeline the
   plan read for the batch (``AccountSnapshot.confirmed``); a check is quiet when every bound
   schedule was confirmed (or, read over its whole window, agrees with the stored timeline in
   full: ``workers.sync.batch_confirm``) and it names nobody the mirror lacks: apply would keep
   them all.
5. **record**: the quiet ones in one UPDATE (``last_checked_at``, fenced by generation and
   status; no row inserted); every other one through the single pass's apply or failure
   ending (row lock, generation fence, events through the outbox, handoff timeline), as today.

A lost batch message costs its connections one interval: the claim already advanced their
``next_sync_at``, as for a lost ``sync_connection`` message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update

from models import ConnectionStatus, PagerDutyConnection, utcnow
from workers.core import locks, metrics
from workers.core.db import transaction
from workers.core.ids import as_uuid
from workers.core.settings import get_settings
from workers.pagerduty.errors import InvalidCredentials
from workers.pagerduty.snapshot import AccountSnapshot, referenced_users
from workers.sync import run
from workers.sync.batch_confirm import window_confirmed
from workers.sync.batch_plan import CheckPlan, Route, add_named_users, plan_batch
from workers.sync.coalescing import lease_name, lease_seconds, rerun_flag
from workers.sync.endings import record_failure
from workers.sync.kinds import Outcome, SyncKind
from workers.sync.records import RunContext, SyncResult
from workers.tasking.contract import RETRY_POLICIES, SYNC_CONNECTION, Family
from workers.tasking.enqueue import publish_many

log = logging.getLogger(__name__)

# Single passes of one batch running at once (each may hold a database connection).
SINGLE_PASSES_AT_ONCE = 2


@dataclass(eq=False)  # compared by identity: equality would walk whole snapshots
class CheckRead:
    """One connection's check as the read stage left it: a snapshot or the error it raised."""

    plan: CheckPlan
    ctx: RunContext
    snapshot: AccountSnapshot | None = None
    error: Exception | None = None


@dataclass
class BatchResult:
    """What the task returns: how many connections ended each way (no ids, no secrets)."""

    connections: int = 0
    covered: int = 0  # leased elsewhere: a sync of them was running
    quiet: int = 0
    applied: int = 0  # went through the single pass's apply (changed, or could not tell)
    single: int = 0  # the single pass from the start (directory due, sync now, token refresh)
    failed: int = 0
    unavailable: int = 0
    requests: int = 0
    handed_over: int = 0
    results: list[SyncResult] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "results"}


def check_connections(
    connection_ids: Sequence[uuid.UUID | str],
    *,
    task_id: str | None = None,
    client_factory: run.ClientFactory | None = None,
    now: Callable[[], datetime] | None = None,
) -> BatchResult:
    """Check a batch of connections: lease, plan, read, decide, record (the module's stages)."""
    cids = list(dict.fromkeys(as_uuid(c) for c in connection_ids))
    out = BatchResult(connections=len(cids))
    names = {lease_name(cid): cid for cid in cids}
    with locks.hold_leases(list(names), lease_seconds()) as taken:
        held = [names[name] for name in taken]
        out.covered = len(cids) - len(held)
        if held:
            _check(held, out, task_id, client_factory or run.default_client, now or utcnow)
    _hand_over(held, out)
    _retry(out.results)
    return out


def _check(
    held: list[uuid.UUID],
    out: BatchResult,
    task_id: str | None,
    make_client: run.ClientFactory,
    clock: Callable[[], datetime],
) -> None:
    started_at = clock()
    plans = plan_batch(held, started_at)
    checks = [p for p in plans if p.route is Route.CHECK]
    singles = [p.cid for p in plans if p.route is Route.SINGLE]
    out.unavailable = len(held) - len(checks) - len(singles)  # gone, or no longer connected
    threads = max(1, min(get_settings().check_batch_threads, len(checks)))
    # Single passes use the database between their reads: a few at a time, so a process holds
    # a few connections, not one per thread (prefork 16 x 8 threads exhausted PostgreSQL's 100).
    with (
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="check") as pool,
        ThreadPoolExecutor(max_workers=SINGLE_PASSES_AT_ONCE, thread_name_prefix="pass") as solo,
    ):
        passes = [solo.submit(_single, cid, task_id, make_client, clock) for cid in singles]
        reads = list(pool.map(lambda p: _read(p, task_id, make_client, started_at), checks))
        for future in passes:
            _count(out, future.result(), Route.SINGLE)
    _look_up_named(reads)
    quiet = [r for r in reads if _is_quiet(r)]
    _record_quiet(quiet)
    out.quiet = len(quiet)
    out.requests += sum(r.ctx.requests_made() for r in quiet)
    for read in reads:
        if read not in quiet:
            _count(out, _finish(read, make_client, clock), Route.CHECK)
    _metrics(quiet, out.unavailable)


def _read(
    plan: CheckPlan, task_id: str | None, make_client: run.ClientFactory, started_at: datetime
) -> CheckRead:
    """The read stage for one connection (on a pool thread): PagerDuty only, no database."""
    assert plan.cred is not None
    ctx = RunContext(plan.cid, SyncKind.SCHEDULED, task_id, started_at, time.monotonic())
    ctx.generation = plan.cred.generation
    read = CheckRead(plan, ctx)
    try:
        client = make_client(plan.cred)
        ctx.clients.append(client)
        read.snapshot = run.read_plain_check(
            plan.cid,
            client,
            plan.read,
            started_at,
            run.may_read_oncalls(plan.cred),
            stored=plan.stored_on_call,
        )
    except Exception as exc:  # recorded by the record stage, for this connection alone
        read.error = exc
    return read


def _single(
    cid: uuid.UUID,
    task_id: str | None,
    make_client: run.ClientFactory,
    clock: Callable[[], datetime],
) -> SyncResult:
    """A connection with more to do than a check: the single pass (the lease is ours)."""
    try:
        return run.sync_once(
            cid, kind=SyncKind.SCHEDULED, task_id=task_id, client_factory=make_client, now=clock
        )
    except Exception:
        # Recorded by the pass where it could be; the other connections go on.
        log.exception("a batch's single pass failed", extra={"connection_id": str(cid)})
        return SyncResult(status=Outcome.FAILED, connection_id=str(cid))


def _look_up_named(reads: list[CheckRead]) -> None:
    """Who each check named beyond the plan's users, looked up for the batch at once."""
    wanted = {
        r.plan.cid: set(referenced_users(r.snapshot)) - set(r.plan.users)
        for r in reads
        if r.snapshot is not None
    }
    add_named_users(
        {cid: uids for cid, uids in wanted.items() if uids}, {r.plan.cid: r.plan for r in reads}
    )


def _is_quiet(read: CheckRead) -> bool:
    """Would applying this check write nothing? Decided against the plan's reads alone."""
    check, plan = read.snapshot, read.plan
    if check is None or check.unreadable:
        return False
    if any(r.never_synced or r.schedule_id is None for r in plan.rotations):
        return False
    if plan.read.bound - {s.id for s in check.schedules}:
        return False  # a bound schedule missing: only the directory can say why
    for uid, ref in referenced_users(check).items():
        known = plan.users.get(uid)
        if known is None or (ref.deleted and known.active):
            return False  # someone new (or deleted since): the single pass looks them up
    # PagerDuty has on call now whom the stored timeline says, for every bound schedule: apply
    # would keep them all as they are (workers.sync.apply). A schedule read over its whole
    # window (/oncalls does not show it) is compared with the stored timeline in full
    # (workers.sync.batch_confirm). Otherwise apply decides from the database what changes.
    unconfirmed = plan.read.bound - check.confirmed
    return not unconfirmed or unconfirmed <= window_confirmed(plan, check)


def _record_quiet(quiet: list[CheckRead]) -> None:
    """One statement for every quiet check: when it ran, how long, how many requests. Fenced:
    a connection whose generation moved (or that left ``connected``) meanwhile is not
    written."""
    if not quiet:
        return
    table = PagerDutyConnection.__table__
    assert isinstance(table, Table)
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.generation == bindparam("b_generation"),
            table.c.status == ConnectionStatus.CONNECTED,
        )
        .values(
            last_checked_at=bindparam("b_at"),
            last_check_ms=bindparam("b_ms"),
            last_check_requests=bindparam("b_requests"),
        )
    )
    with transaction() as session:
        session.execute(
            statement,
            [
                {
                    "b_id": r.plan.cid,
                    "b_generation": r.ctx.generation,
                    "b_at": r.ctx.started_at,
                    "b_ms": r.ctx.duration_ms(),
                    "b_requests": r.ctx.requests_made(),
                }
                for r in quiet
            ],
        )


def _finish(
    read: CheckRead, make_client: run.ClientFactory, clock: Callable[[], datetime]
) -> SyncResult:
    """A check that is not quiet ends as the single pass would have ended it."""
    ctx, plan = read.ctx, read.plan
    if isinstance(read.error, InvalidCredentials):
        # The refresh (OAuth) or the invalid key's words: the single pass knows both.
        return _single(plan.cid, ctx.task_id, make_client, clock)
    try:
        if read.error is not None:
            raise read.error
        assert read.snapshot is not None and plan.cred is not None
        snapshot = run.complete_check(
            plan.cid,
            ctx.clients[-1],
            plan.read,
            read.snapshot,
            ctx.started_at,
            run.may_read_oncalls(plan.cred),
        )
        return ctx.apply(snapshot, clock)
    except Exception as exc:
        try:
            return record_failure(ctx, exc)
        except Exception:
            log.exception("a batch's check failed", extra={"connection_id": str(plan.cid)})
            return SyncResult(status=Outcome.FAILED, connection_id=str(plan.cid))


def _count(out: BatchResult, result: SyncResult, route: Route) -> None:
    out.results.append(result)
    out.requests += result.requests
    if result.status == Outcome.FAILED:
        out.failed += 1
    elif result.status == Outcome.UNAVAILABLE:
        out.unavailable += 1
    elif route is Route.SINGLE:
        out.single += 1
    else:
        out.applied += 1


def _metrics(quiet: list[CheckRead], unavailable: int) -> None:
    """The quiet checks' metrics in one pipelined round trip (the others counted their own)."""
    samples: list[tuple[str, float, dict[str, str]]] = []
    if quiet:
        samples += [
            ("rrpd_syncs_total", len(quiet), {"outcome": Outcome.SUCCEEDED}),
            ("rrpd_sync_duration_seconds_sum", sum(r.ctx.duration_ms() for r in quiet) / 1000, {}),
            ("rrpd_sync_duration_seconds_count", len(quiet), {}),
        ]
    if unavailable:
        samples.append(("rrpd_syncs_total", unavailable, {"outcome": Outcome.UNAVAILABLE}))
    for read in quiet:
        for client in read.ctx.clients:
            for endpoint, count in client.requests_by_endpoint.items():
                samples.append(("rrpd_pagerduty_requests_total", count, {"endpoint": endpoint}))
    if samples:
        metrics.incr_many(samples)


def _hand_over(held: list[uuid.UUID], out: BatchResult) -> None:
    """A "sync now" that came while the batch held a lease left only its rerun flag: a fresh
    single sync serves it (as a holder's rerun would), found in one round trip."""
    flagged = locks.flags_set([rerun_flag(cid) for cid in held])
    if flagged:
        ids = [name.split(":", 1)[1] for name in flagged]
        out.handed_over = publish_many(
            SYNC_CONNECTION,
            [({"connection_id": cid, "kind": SyncKind.SCHEDULED.value}, None) for cid in ids],
        )


def _retry(results: list[SyncResult]) -> None:
    """Failures a later try may fix (429, PagerDuty unreachable) get the single task's retry:
    one ``sync_connection`` each, after PagerDuty's reset or the family's first backoff."""
    policy = RETRY_POLICIES[Family.SYNC]
    base = policy.base if policy is not None else 5.0
    retries = [
        (
            {"connection_id": r.connection_id, "kind": SyncKind.SCHEDULED.value},
            r.retry_after or base,
        )
        for r in results
        if r.retry
    ]
    if retries:
        publish_many(SYNC_CONNECTION, retries)

"""Run records: the ``SyncRun`` row and the metrics of one pass, however the pass ends.

``RunContext`` is created at the start of a pass (``workers.sync.run.sync_once``) and ends it
in exactly one way: ``unavailable`` (nothing recorded), ``skipped`` (fenced: the connection
changed meanwhile), ``failed`` (its own transaction; fenced failure bookkeeping on the
connection) or ``apply`` (the diff and the ``SyncRun`` in one transaction).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, SyncRun, utcnow
from workers.core import metrics
from workers.core.connection_rows import lock_connection
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.events import transition as change_status
from workers.pagerduty.interfaces import PagerDutyReader
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync import messages
from workers.sync.apply import ApplyResult, apply_snapshot
from workers.sync.kinds import Outcome, RetryReason, SyncKind, run_status

log = logging.getLogger(__name__)

# A failing connection is re-synced by beat after interval * 2^failures, at most this long.
MAX_FAILURE_BACKOFF_SECONDS = 3600


@dataclass
class SyncResult:
    """The outcome of one sync call; ``as_dict`` is what the task returns (no secrets)."""

    status: Outcome
    connection_id: str
    sync_run_id: str | None = None
    created: int = 0
    updated: int = 0
    deleted: int = 0
    requests: int = 0
    passes: int = 0
    unmatched_on_call: int = 0
    # Which read the applied pass made: "check" (who is on call) or "directory" (everything).
    read: str | None = None
    error: str | None = None
    # Set when the task should retry, and why.
    retry: RetryReason | None = None
    retry_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class RunContext:
    """Bookkeeping for one pass: records the SyncRun and metrics however the pass ends."""

    def __init__(
        self, cid: uuid.UUID, kind: SyncKind, task_id: str | None, started_at: datetime, t0: float
    ) -> None:
        self.cid = cid
        self.kind = kind
        self.task_id = task_id
        self.started_at = started_at
        self.t0 = t0
        self.generation: int | None = None
        self.clients: list[PagerDutyReader] = []

    # -- helpers --

    def requests_made(self) -> int:
        return sum(c.requests_made for c in self.clients)

    def duration_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def _metrics(self, outcome: str, duration_ms: int) -> None:
        # One pipelined round trip, not one per counter (per-check overhead, docs/operations.md).
        samples: list[tuple[str, float, dict[str, str]]] = [
            ("rrpd_syncs_total", 1, {"outcome": outcome}),
            ("rrpd_sync_duration_seconds_sum", duration_ms / 1000, {}),
            ("rrpd_sync_duration_seconds_count", 1, {}),
        ]
        for client in self.clients:
            for endpoint, count in client.requests_by_endpoint.items():
                samples.append(("rrpd_pagerduty_requests_total", count, {"endpoint": endpoint}))
            for endpoint, count in client.rate_limited_by_endpoint.items():
                samples.append(("rrpd_pagerduty_rate_limited_total", count, {"endpoint": endpoint}))
        metrics.incr_many(samples)

    def _run(
        self, status: Outcome, generation: int, error: str | None, applied: ApplyResult | None
    ) -> SyncRun:
        duration_ms = self.duration_ms()
        return SyncRun(
            id=uuid.uuid4(),
            connection_id=self.cid,
            generation=generation,
            kind=self.kind,
            status=run_status(status),
            task_id=self.task_id,
            started_at=self.started_at,
            finished_at=utcnow(),
            duration_ms=duration_ms,
            rows_created=applied.created if applied else 0,
            rows_updated=applied.updated if applied else 0,
            rows_deleted=applied.deleted if applied else 0,
            requests_made=self.requests_made(),
            error=error,
        )

    def _answer(self, conn: PagerDutyConnection) -> None:
        """A recorded run that started after a pending "sync now" answers it (the row locked);
        a quiet sync with none pending leaves the row alone."""
        requested = conn.sync_requested_at
        if requested is not None and requested <= self.started_at:
            conn.sync_requested_at = None
            conn.drive_at = None
            conn.drives = 0

    def _answered(self, session: Session, cid: uuid.UUID) -> None:
        """``_answer`` for an ending that did not lock the row: a conditional update."""
        session.execute(
            update(PagerDutyConnection)
            .where(
                PagerDutyConnection.id == cid,
                PagerDutyConnection.sync_requested_at <= self.started_at,
            )
            .values(sync_requested_at=None, drive_at=None, drives=0)
            .execution_options(synchronize_session=False)
        )

    def _quiet(self, conn: PagerDutyConnection, applied: ApplyResult) -> bool:
        """A scheduled pass that changed nothing, with nothing to say and nobody waiting for
        it: it inserts no ``SyncRun`` (docs/sync-and-disconnect.md, "Quiet checks")."""
        requested = conn.sync_requested_at
        return (
            self.kind == SyncKind.SCHEDULED
            and not applied.changed
            and not applied.warnings
            and not conn.consecutive_sync_failures
            and conn.last_synced_at is not None
            and not (requested is not None and requested <= self.started_at)
        )

    def _checked(self, conn: PagerDutyConnection, snapshot: AccountSnapshot) -> SyncResult:
        """End a quiet pass: the connection row says when it last checked (no new row)."""
        duration_ms = self.duration_ms()
        requests = self.requests_made()
        conn.last_checked_at = self.started_at
        conn.last_check_ms = duration_ms
        conn.last_check_requests = requests
        if snapshot.directory_read:
            conn.directory_read_at = snapshot.fetched_at
        if snapshot.upcoming_until is not None:
            conn.upcoming_read_at = snapshot.fetched_at
        self._metrics(Outcome.SUCCEEDED, duration_ms)
        return SyncResult(
            status=Outcome.SUCCEEDED,
            connection_id=str(self.cid),
            requests=requests,
            read="directory" if snapshot.directory_read else "check",
        )

    # -- endings --

    def unavailable(self, status: str | None) -> SyncResult:
        self._metrics(Outcome.UNAVAILABLE, self.duration_ms())
        return SyncResult(
            status=Outcome.UNAVAILABLE,
            connection_id=str(self.cid),
            requests=self.requests_made(),
            error=f"connection is {status or 'missing'}",
        )

    def skipped(self) -> SyncResult:
        with transaction() as session:
            conn = session.get(PagerDutyConnection, self.cid)
            if conn is None:
                return self.unavailable(None)
            run = self._run(
                Outcome.SKIPPED, self.generation or conn.generation, messages.FENCED, None
            )
            session.add(run)
            self._answered(session, conn.id)
        self._metrics(Outcome.SKIPPED, run.duration_ms or 0)
        return SyncResult(
            status=Outcome.SKIPPED,
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            requests=run.requests_made,
            error=messages.FENCED,
        )

    def failed(
        self,
        message: str,
        *,
        moves_to: ConnectionStatus | None = None,
        retry: RetryReason | None = None,
        retry_after: float | None = None,
        also_current: ConnectionStatus | None = None,
    ) -> SyncResult:
        """Record a failed run in its own transaction; touch the connection only if fenced-in.

        ``also_current``: a status this very pass moved the connection to (needs_reauth after a
        refused refresh), which still counts as "ours" rather than a concurrent change.
        """
        settings = get_settings()
        with transaction() as session:
            conn = lock_connection(session, self.cid)
            if conn is None:
                return self.unavailable(None)
            generation = self.generation if self.generation is not None else conn.generation
            ours = {ConnectionStatus.CONNECTED}
            if also_current is not None:
                ours.add(also_current)
            fenced_in = conn.generation == generation and conn.status in ours
            status = Outcome.FAILED if fenced_in else Outcome.SKIPPED
            run = self._run(status, generation, message if fenced_in else messages.FENCED, None)
            session.add(run)
            self._answer(conn)
            if fenced_in:
                conn.consecutive_sync_failures += 1
                backoff = min(
                    settings.sync_interval_seconds * 2 ** min(conn.consecutive_sync_failures, 10),
                    MAX_FAILURE_BACKOFF_SECONDS,
                )
                not_before = utcnow() + timedelta(seconds=backoff)
                if conn.next_sync_at is None or conn.next_sync_at < not_before:
                    conn.next_sync_at = not_before
                if moves_to is not None and conn.can_transition(moves_to):
                    # The connection's status says why, in the run's own words.
                    change_status(session, conn, moves_to, error=message)
        self._metrics(status, run.duration_ms or 0)
        log.info("sync %s: %s", status, message, extra={"connection_id": str(self.cid)})
        return SyncResult(
            status=status,
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            requests=run.requests_made,
            error=run.error,
            retry=retry if fenced_in else None,
            retry_after=retry_after,
        )

    def apply(self, snapshot: AccountSnapshot, clock: Callable[[], datetime]) -> SyncResult:
        with transaction() as session:
            conn = lock_connection(session, self.cid)
            if conn is None:
                return self.unavailable(None)
            if conn.generation != self.generation or conn.status != ConnectionStatus.CONNECTED:
                run = self._run(Outcome.SKIPPED, self.generation or 0, messages.FENCED, None)
                session.add(run)
                applied = None
                self._answer(conn)
            else:
                applied = apply_snapshot(session, conn, snapshot, now=clock())
                if self._quiet(conn, applied):
                    return self._checked(conn, snapshot)
                # Connection bookkeeping only when it changes something (see the docs).
                if conn.consecutive_sync_failures:
                    conn.consecutive_sync_failures = 0
                if applied.changed or conn.last_synced_at is None:
                    conn.last_synced_at = utcnow()
                if snapshot.directory_read:
                    # The next directory read is due an interval after this one's moment.
                    conn.directory_read_at = snapshot.fetched_at
                if snapshot.upcoming_until is not None:
                    conn.upcoming_read_at = snapshot.fetched_at
                run = self._run(
                    Outcome.SUCCEEDED,
                    conn.generation,
                    " ".join(applied.warnings) or None,
                    applied,
                )
                session.add(run)
                self._answer(conn)
        self._metrics(run.status, run.duration_ms or 0)
        return SyncResult(
            status=Outcome(run.status),
            connection_id=str(self.cid),
            sync_run_id=str(run.id),
            created=run.rows_created,
            updated=run.rows_updated,
            deleted=run.rows_deleted,
            requests=run.requests_made,
            unmatched_on_call=applied.unmatched_on_call if applied else 0,
            read="directory" if snapshot.directory_read else "check",
            error=run.error,
        )

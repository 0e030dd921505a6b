"""One round of the ``deadlines`` loop: drive again the work of connections past their deadline.

A state that expects a task sets ``PagerDutyConnection.drive_at`` in the transaction that
enters it (``PagerDutyConnection.transition``/``expect_work``; a "sync now" in
``workers.sync.request``), and leaving the state clears it. A task message can be lost after
its outbox row was marked published (kombu's Redis transport pops a message before it records
it as unacked, so a worker killed in between loses it); nothing but the database notices, so
the database decides: a round claims rows past ``drive_at`` (``FOR UPDATE SKIP LOCKED``: a row
another node is driving, or a disconnect or sync holds, is left to it), enqueues the same
idempotent, generation-fenced task through the outbox in that transaction, counts the drive
and pushes ``drive_at`` forward with a capped backoff. Several nodes never drive one row twice
for one deadline; a node killed mid-round rolls back and another node's round redoes it.

- ``validating``: ``pagerduty.validate_api_key`` again, or ``pagerduty.exchange_oauth_code``
  for the login's authorization while it still holds its code. A validation still validating
  at its deadline after ``MAX_VALIDATION_DRIVES`` drives (about 48 s after it began), or an
  OAuth exchange that took the code and outlived its time limit, ends ``invalid`` in words that
  do not blame PagerDuty.
- ``disconnecting``: ``pagerduty.disconnect`` again, until it is done.
- a pending credential being checked (``pending_drive_at``, workers.connections.pending):
  ``pagerduty.validate_api_key`` with its pending generation again, or for a pending OAuth
  login (workers.connections.pending_login) ``pagerduty.exchange_oauth_code`` while its login
  still holds its code or kept tokens; still unchecked after ``MAX_VALIDATION_DRIVES`` drives,
  or a login whose exchange took the code and died, it ends ``lost``, the live credentials
  untouched.
- ``connected`` with ``sync_requested_at``: ``pagerduty.sync_connection(kind="manual")`` again,
  until a run that started after the request is recorded.

Tasks push the deadline forward themselves when they start and before a retry, so a task that
is merely slow is not driven twice (docs/operations.md, "Deadlines").
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    AuditEvent,
    AuthMethod,
    ConnectionStatus,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    utcnow,
)
from models.connection import STATUS_MEANINGS
from workers.connections import messages, pending
from workers.connections.activation import record_invalid
from workers.core import metrics
from workers.core.db import transaction
from workers.tasking.contract import (
    DISCONNECT,
    EXCHANGE_OAUTH_CODE,
    SYNC_CONNECTION,
    VALIDATE_API_KEY,
)
from workers.tasking.enqueue import enqueue

log = logging.getLogger(__name__)

BATCH = 50
# Drives before a validation is given up: deadlines 8 s, 16 s, 32 s and 48 s after it began
# (backoff 8, 16, 16): it ends within a minute even when every message is lost.
MAX_VALIDATION_DRIVES = 3
# Seconds to the next deadline after the n-th drive: base * 2^(n-1), at most cap; the base is
# the status's first deadline (models.connection.STATUS_MEANINGS).
_CAPS = {
    ConnectionStatus.VALIDATING: 16.0,
    ConnectionStatus.DISCONNECTING: 30.0,
    ConnectionStatus.CONNECTED: 300.0,  # a requested "sync now"
}
BACKOFF: dict[ConnectionStatus, tuple[float, float]] = {
    s: (STATUS_MEANINGS[s].deadline or cap, cap) for s, cap in _CAPS.items()
}


def backoff(status: ConnectionStatus, drives: int) -> float:
    base, cap = BACKOFF.get(status, (15.0, 300.0))
    return float(min(cap, base * 2 ** max(drives - 1, 0)))


@dataclass
class RoundResult:
    driven: dict[str, int] = field(default_factory=dict)
    ended_invalid: int = 0
    cleared: int = 0

    @property
    def claimed(self) -> int:
        return sum(self.driven.values()) + self.ended_invalid + self.cleared


def run_round(now: datetime | None = None, *, batch: int = BATCH) -> RoundResult:
    """Claim up to ``batch`` connections past their deadline and drive each, in one
    transaction."""
    now = now or utcnow()
    result = RoundResult()
    with transaction() as session:
        rows = (
            session.execute(
                select(PagerDutyConnection)
                .where(
                    or_(
                        PagerDutyConnection.drive_at <= now,
                        PagerDutyConnection.pending_drive_at <= now,
                    )
                )
                .order_by(PagerDutyConnection.drive_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
            .scalars()
            .all()
        )
        for conn in rows:
            if conn.pending_drive_at is not None and conn.pending_drive_at <= now:
                _drive_pending(session, conn, now, result)
            if conn.drive_at is not None and conn.drive_at <= now:
                _drive(session, conn, now, result)
    for status, count in result.driven.items():
        metrics.incr("rrpd_deadline_drives_total", count, status=status)
    return result


def _drive(session: Session, conn: PagerDutyConnection, now: datetime, result: RoundResult) -> None:
    status = ConnectionStatus(conn.status)
    if status is ConnectionStatus.VALIDATING:
        if conn.drives >= MAX_VALIDATION_DRIVES:
            _end_invalid(session, conn, messages.CHECK_LOST, result)
            return
        if conn.auth_method == AuthMethod.OAUTH:
            authorization = _current_authorization(session, conn.id)
            if authorization is None:
                _end_invalid(session, conn, messages.CHECK_LOST, result)
                return
            authorization_id, holds_code = authorization
            if not holds_code:
                # The exchange took the single-use code and outlived its time limit before
                # PagerDuty's answer was kept: it died; the code is spent.
                _end_invalid(session, conn, messages.CODE_REFUSED, result)
                return
            enqueue(
                session,
                EXCHANGE_OAUTH_CODE,
                workspace_id=conn.workspace_id,
                authorization_id=authorization_id,
            )
        else:
            enqueue(
                session,
                VALIDATE_API_KEY,
                workspace_id=conn.workspace_id,
                connection_id=conn.id,
                generation=conn.generation,
            )
    elif status is ConnectionStatus.DISCONNECTING:
        enqueue(
            session,
            DISCONNECT,
            workspace_id=conn.workspace_id,
            connection_id=conn.id,
            actor_member_id=_disconnect_requester(session, conn.workspace_id),
        )
    elif status is ConnectionStatus.CONNECTED and conn.sync_requested_at is not None:
        enqueue(
            session,
            SYNC_CONNECTION,
            workspace_id=conn.workspace_id,
            connection_id=conn.id,
            kind="manual",
        )
    else:
        # Nothing pending any more (a stale deadline): nothing to drive.
        conn.drive_at = None
        conn.drives = 0
        conn.sync_requested_at = None
        result.cleared += 1
        return
    conn.drives += 1
    conn.drive_at = now + timedelta(seconds=backoff(status, conn.drives))
    result.driven[status.value] = result.driven.get(status.value, 0) + 1
    log.warning(
        "driving a %s connection again: its task did not finish by its deadline (drive %d)",
        status.value,
        conn.drives,
        extra={"connection_id": str(conn.id)},
    )


def _drive_pending(
    session: Session, conn: PagerDutyConnection, now: datetime, result: RoundResult
) -> None:
    """The check of a pending credential: driven like a validation, never breaking the live
    connection when it ends."""
    if conn.pending_status != PendingStatus.CHECKING or conn.pending_generation is None:
        conn.pending_drive_at = None  # a stale deadline
        conn.pending_drives = 0
        result.cleared += 1
        return
    if conn.pending_drives >= MAX_VALIDATION_DRIVES:
        lost = (
            messages.pending_login_lost
            if conn.pending_auth_method == AuthMethod.OAUTH
            else messages.pending_lost
        )
        pending.record_ended(session, conn, PendingStatus.LOST, lost(messages.CHECK_LOST))
        result.ended_invalid += 1
        return
    if conn.pending_auth_method == AuthMethod.OAUTH:
        # A pending OAuth login: its exchange again, from the login row, while that row still
        # holds its code or kept tokens; a login whose code an exchange took and outlived its
        # time limit with is spent: "lost", the live credentials untouched.
        authorization = _current_authorization(session, conn.id)
        if authorization is None or not authorization[1]:
            pending.record_ended(
                session, conn, PendingStatus.LOST, messages.pending_login_lost(messages.CHECK_LOST)
            )
            result.ended_invalid += 1
            return
        enqueue(
            session,
            EXCHANGE_OAUTH_CODE,
            workspace_id=conn.workspace_id,
            authorization_id=authorization[0],
        )
    else:
        enqueue(
            session,
            VALIDATE_API_KEY,
            workspace_id=conn.workspace_id,
            connection_id=conn.id,
            generation=conn.pending_generation,
        )
    conn.pending_drives += 1
    conn.pending_drive_at = now + timedelta(
        seconds=backoff(ConnectionStatus.VALIDATING, conn.pending_drives)
    )
    result.driven["pending"] = result.driven.get("pending", 0) + 1
    log.warning(
        "driving a pending credential's check again: it did not finish by its deadline (drive %d)",
        conn.pending_drives,
        extra={"connection_id": str(conn.id)},
    )


def _end_invalid(
    session: Session, conn: PagerDutyConnection, message: str, result: RoundResult
) -> None:
    record_invalid(session, conn, message)
    result.ended_invalid += 1


def _current_authorization(session: Session, cid: uuid.UUID) -> tuple[uuid.UUID, bool] | None:
    """The login being exchanged for this connection (the latest callback), and whether it
    still holds its code or kept tokens. Read without a lock (the row lock on the connection,
    taken first by the exchange too, orders them)."""
    row = session.execute(
        select(
            OAuthAuthorization.id,
            # The code, or the tokens PagerDuty issued for it (kept until their id_token is
            # checked): either lets the exchange task go on.
            OAuthAuthorization.code.is_not(None) | OAuthAuthorization.issued_tokens.is_not(None),
        )
        .where(
            OAuthAuthorization.connection_id == cid,
            OAuthAuthorization.code_received_at.is_not(None),
        )
        .order_by(OAuthAuthorization.code_received_at.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], bool(row[1]))


def _disconnect_requester(session: Session, workspace_id: uuid.UUID) -> uuid.UUID | None:
    """Who asked for the disconnect (its audit row), so the disconnect's audit still names them."""
    return session.execute(
        select(AuditEvent.actor_member_id)
        .where(
            AuditEvent.workspace_id == workspace_id,
            AuditEvent.action == AuditAction.DISCONNECT_REQUESTED,
        )
        .order_by(AuditEvent.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def step() -> float:
    """The loop body: at once again after a full batch, else within ``max_sleep``."""
    return 0.0 if run_round().claimed >= BATCH else 1.0

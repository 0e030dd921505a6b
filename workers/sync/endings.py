"""How a pass that raised ends (the single pass and the batch alike): recorded in plain words
(and retried where that helps), or re-raised when nothing can be recorded or it is a bug."""

from __future__ import annotations

import logging

from models import ConnectionStatus
from workers.connections.tokens import ConnectionUnavailable
from workers.core.outages import is_transient_database_error
from workers.pagerduty.errors import (
    Forbidden,
    NoApiAccess,
    PagerDutyError,
    PaginationLimit,
    RateLimited,
    Transient,
)
from workers.sync import messages
from workers.sync.kinds import RetryReason
from workers.sync.records import RunContext, SyncResult

log = logging.getLogger(__name__)


def record_failure(ctx: RunContext, exc: Exception) -> SyncResult:
    """How a pass that raised ends: recorded in plain words (and retried where that helps), or
    re-raised when nothing can be recorded (the database away) or it is a bug."""
    if isinstance(exc, ConnectionUnavailable):  # NeedsReauth too: the connection says why
        return ctx.unavailable(exc.status)
    if isinstance(exc, RateLimited):
        # Counted (with every 429 the client retried itself) when the run's metrics are written.
        wait = exc.reset_after
        return ctx.failed(
            messages.rate_limited(wait), retry=RetryReason.RATE_LIMITED, retry_after=wait
        )
    if isinstance(exc, Transient):
        return ctx.failed(messages.transient(exc), retry=RetryReason.TRANSIENT)
    if isinstance(exc, NoApiAccess):
        return ctx.failed(messages.NO_API_ACCESS, moves_to=ConnectionStatus.INVALID)
    if isinstance(exc, Forbidden):
        return ctx.failed(messages.forbidden(exc.missing))
    if isinstance(exc, PaginationLimit):
        return ctx.failed(messages.too_large(exc))
    if isinstance(exc, PagerDutyError):
        return ctx.failed(messages.unusable(exc))
    if not is_transient_database_error(exc):
        # A bug, a soft time limit: record it in plain words, then let the task machinery see
        # the exception. (With the database away nothing can be recorded: the task retries.)
        try:
            ctx.failed(messages.internal_error(exc))
        except Exception:
            log.exception("could not record the failed sync run")
    raise exc

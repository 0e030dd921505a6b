"""Connection tasks: validate an API key, exchange an OAuth code, keep OAuth tokens fresh.

Thin wrappers over ``workers.connections``; names, arguments, limits and retries come from the
contract (``workers.tasking.contract``, docs/tasks.md). Idempotent: a connection that moved on
(new key, disconnected) is left alone ("stale").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded

from workers.connections import (
    account_change,
    activation,
    messages,
    oauth_exchange,
    sweeps,
    tokens,
)
from workers.core.outages import is_transient_database_error
from workers.pagerduty.errors import PagerDutyError, RateLimited, Transient
from workers.tasking.app import BeatTask, ConnectTask, contract_task
from workers.tasking.contract import (
    EXCHANGE_OAUTH_CODE,
    REFRESH_EXPIRING_TOKENS,
    REFRESH_TOKEN,
    VALIDATE_API_KEY,
)
from workers.tasking.enqueue import publish_now

# What refresh_token answers (docs/tasks.md, workers.tasking.outcomes).
RefreshOutcome = Literal["valid", "needs_reauth", "skipped"]


def _refreshed(connection_id: str, outcome: RefreshOutcome, **extra: Any) -> dict[str, Any]:
    return {"connection_id": connection_id, "outcome": outcome, **extra}


def _failure_words(exc: BaseException) -> str:
    """What an admin reads when a connect task ends failed: the real cause, never PagerDuty's
    fault for an error of ours."""
    if is_transient_database_error(exc):
        return messages.DATABASE_UNAVAILABLE
    if isinstance(exc, PagerDutyError | SoftTimeLimitExceeded):
        return messages.UNREACHABLE  # retries spent, or PagerDuty too slow
    return messages.CHECK_FAILED_HERE  # a bug of ours


class ValidationTask(ConnectTask):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Any terminal failure (a bug, a crash loop caught by the poison guard, a time limit)
        # still leaves the connection in a clear state instead of "validating" for ever.
        connection_id = kwargs.get("connection_id")
        if connection_id:
            activation.give_up(connection_id, kwargs.get("generation"), _failure_words(exc))


@contract_task(VALIDATE_API_KEY, base=ValidationTask)
def validate_api_key(self: ConnectTask, *, connection_id: str, generation: int) -> dict[str, Any]:
    def push_deadline(countdown: float) -> None:
        activation.expect_retry(connection_id, generation, countdown)

    try:
        return activation.validate_api_key(connection_id, generation).as_dict()
    except RateLimited as exc:
        if not self.retries_left:
            return activation.give_up(connection_id, generation).as_dict()
        self.retry_later(
            exc=Transient("rate limited"), reset_after=exc.reset_after, before=push_deadline
        )
    except (Transient, SoftTimeLimitExceeded):
        if not self.retries_left:
            return activation.give_up(connection_id, generation).as_dict()
        self.retry_later(exc=Transient("PagerDuty unreachable"), before=push_deadline)


class ExchangeTask(ConnectTask):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # As ValidationTask: a terminal failure still ends the login in a clear state, and
        # deletes it (with any tokens PagerDuty issued for it).
        authorization_id = kwargs.get("authorization_id")
        if authorization_id:
            oauth_exchange.give_up_login(authorization_id, _failure_words(exc))


@contract_task(EXCHANGE_OAUTH_CODE, base=ExchangeTask)
def exchange_oauth_code(self: ConnectTask, *, authorization_id: str) -> dict[str, Any]:
    """Never retries the exchange (the code is single-use): only the id_token check of tokens
    PagerDuty issued and that are kept on the login (``VerificationPending``), or what a time
    limit interrupted (a retry finds the kept tokens, or the spent code and says so)."""
    try:
        return oauth_exchange.exchange_oauth_code(authorization_id).as_dict()
    except (oauth_exchange.VerificationPending, SoftTimeLimitExceeded) as exc:
        if not self.retries_left:
            return oauth_exchange.give_up_login(authorization_id).as_dict()
        self.retry_later(
            exc=Transient("PagerDuty's signing keys unreachable"),
            reset_after=getattr(exc, "reset_after", None),
            before=lambda countdown: oauth_exchange.expect_retry(authorization_id, countdown),
        )


@contract_task(REFRESH_TOKEN)
def refresh_token(self: ConnectTask, *, connection_id: str) -> dict[str, Any]:
    """Refresh if the token expires within the margin or was not refreshed for a day.

    Idempotent: a token another worker just refreshed is left alone. A connection that is
    gone or not connected is skipped. Transient failures retry without burning the refresh
    token (the stored one stays valid until PagerDuty answers).
    """
    try:
        cred = tokens.credential_for(connection_id)
        if cred.auth_method == "oauth" and tokens.is_idle(connection_id):
            # Keep the refresh token alive (30-day lifetime) even when nobody syncs.
            cred = tokens.refresh_connection(connection_id, margin=timedelta(days=2))
    except tokens.NeedsReauth:
        return _refreshed(connection_id, "needs_reauth")
    except tokens.ConnectionUnavailable as exc:
        return _refreshed(connection_id, "skipped", status=exc.status)
    except (Transient, RateLimited) as exc:
        self.retry_later(
            exc=Transient("token endpoint unreachable"),
            reset_after=getattr(exc, "reset_after", None),
        )
    expires = cred.expires_at.isoformat() if cred.expires_at else None
    return _refreshed(connection_id, "valid", expires_at=expires)


@contract_task(REFRESH_EXPIRING_TOKENS)
def refresh_expiring_tokens(self: BeatTask) -> dict[str, int]:
    """Beat: enqueue a refresh for every token near expiry or idle for a day; delete abandoned
    OAuth logins.

    ``stale_validations`` is always 0 and kept for readers of the result: lost validations are
    no longer swept here but driven, then ended, by their deadline (``workers.deadlines``)."""
    due = tokens.connections_due_for_refresh()
    for connection_id in due:
        publish_now(REFRESH_TOKEN, connection_id=connection_id)
    abandoned = sweeps.forget_abandoned_logins()
    return {
        "refreshes_enqueued": len(due),
        "stale_validations": 0,
        "abandoned_logins": abandoned,
        "expired_account_changes": account_change.forget_expired(),
    }

"""Ending lost validations: the last resort, not the way a lost publish is recovered.

The task a connect enqueues is an outbox row of the connect's own transaction, so it reaches
the broker however Redis behaves at the commit (``workers.outbox``), and a worker killed
mid-task has its message back within seconds (``workers.tasking.redelivery``). What this sweep
still guards: a message the broker itself lost after it was published (a Redis restart without
persistence, a failover that dropped writes) and one dropped for good as poison. Beat's
``pagerduty.refresh_expiring_tokens`` runs it every 5 minutes: a connection ``validating`` for
longer than ``STALE_AFTER`` gets a clear error (``invalid``, "the check was interrupted...
try again") and the admin submits again. The same round deletes abandoned OAuth logins.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from models import AuthMethod, ConnectionStatus, OAuthAuthorization, PagerDutyConnection, utcnow
from workers.connections import messages
from workers.connections.activation import finish_invalid
from workers.core.db import affected_rows, transaction

# An OAuth code dies in 30 s; an API-key check retries for a few minutes at most.
STALE_AFTER = {AuthMethod.OAUTH: 120, AuthMethod.API_KEY: 600}
# A login nobody came back from (the admin closed the consent page) keeps its client secret
# and PKCE verifier until this long after it expired; in that hour a late callback still
# reads "expired" rather than "unknown".
ABANDONED_LOGIN_AFTER = timedelta(hours=1)


def expire_stale_validations() -> int:
    """Connections stuck in ``validating`` (a worker died, every retry lost) get a clear error."""
    now = utcnow()
    with transaction() as session:
        stuck = [
            (cid, generation)
            for cid, generation, method, since in session.execute(
                select(
                    PagerDutyConnection.id,
                    PagerDutyConnection.generation,
                    PagerDutyConnection.auth_method,
                    PagerDutyConnection.status_changed_at,
                ).where(PagerDutyConnection.status == ConnectionStatus.VALIDATING)
            )
            if since <= now - timedelta(seconds=STALE_AFTER.get(method, 600))
        ]
    for cid, generation in stuck:
        finish_invalid(cid, generation, messages.CHECK_LOST)
    return len(stuck)


def forget_abandoned_logins(now: datetime | None = None) -> int:
    """Delete logins an hour past their expiry, with their secrets. Every other way a login
    ends deletes it at once (callback refused, connected, invalid, superseded, disconnected);
    a login still pending an hour after its expiry can never be used."""
    cutoff = (now or utcnow()) - ABANDONED_LOGIN_AFTER
    with transaction() as session:
        return affected_rows(
            session.execute(
                delete(OAuthAuthorization)
                .where(OAuthAuthorization.expires_at <= cutoff)
                .execution_options(synchronize_session=False)
            )
        )

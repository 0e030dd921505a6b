"""Ending lost validations: the last resort, not the way a lost publish is recovered.

The task a connect enqueues is an outbox row of the connect's own transaction, so it reaches
the broker however Redis behaves at the commit (``workers.outbox``), and a worker killed
mid-task has its message back within seconds (``workers.tasking.redelivery``). What this sweep
still guards: a message the broker itself lost after it was published (a Redis restart without
persistence, a failover that dropped writes) and one dropped for good as poison. Beat's
``pagerduty.refresh_expiring_tokens`` runs it every 5 minutes: a connection ``validating`` for
longer than ``STALE_AFTER`` gets a clear error (``invalid``, "the check was interrupted...
try again") and the admin submits again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from models import AuthMethod, ConnectionStatus, PagerDutyConnection, utcnow
from workers.connections import messages
from workers.connections.activation import finish_invalid
from workers.core.db import transaction

# An OAuth code dies in 30 s; an API-key check retries for a few minutes at most.
STALE_AFTER = {AuthMethod.OAUTH: 120, AuthMethod.API_KEY: 600}


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

"""OAuth token upkeep: refresh one connection's token; the beat scan that finds them."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from celery import Task

from workers import activation, tokens
from workers.celery_app import app
from workers.enqueue import REFRESH_TOKEN, publish_now
from workers.pagerduty.errors import RateLimited, Transient

REFRESH_MAX_RETRIES = 6


@app.task(
    bind=True,
    name="pagerduty.refresh_token",
    queue="interactive",
    ignore_result=False,
    soft_time_limit=60,
    time_limit=90,
    max_retries=REFRESH_MAX_RETRIES,
    acks_late=True,
)
def refresh_token(self: Task, *, connection_id: str) -> dict[str, Any]:
    """Refresh if the token expires within the margin or was not refreshed for a day.

    Idempotent: a token another worker just refreshed is left alone. A connection that is
    gone or not connected is skipped. Transient failures retry without burning the refresh
    token (the stored one stays valid until PagerDuty answers).
    """
    try:
        cred = tokens.credential_for(connection_id)
        if cred.auth_method == "oauth":
            idle = tokens.is_idle(connection_id)
            if idle:
                # Keep the refresh token alive (30-day lifetime) even when nobody syncs.
                cred = tokens.refresh_connection(connection_id, margin=timedelta(days=2))
    except tokens.NeedsReauth:
        return {"connection_id": connection_id, "outcome": "needs_reauth"}
    except tokens.ConnectionUnavailable as exc:
        return {"connection_id": connection_id, "outcome": "skipped", "status": exc.status}
    except (Transient, RateLimited) as exc:
        countdown = getattr(exc, "reset_after", None) or random.uniform(
            1, 2 ** (self.request.retries + 2)
        )
        raise self.retry(countdown=countdown, exc=Transient("token endpoint unreachable")) from None
    expires = cred.expires_at.isoformat() if cred.expires_at else None
    return {"connection_id": connection_id, "outcome": "valid", "expires_at": expires}


@app.task(
    name="pagerduty.refresh_expiring_tokens",
    queue="interactive",
    ignore_result=False,
    soft_time_limit=60,
    time_limit=90,
    max_retries=0,
    acks_late=True,
)
def refresh_expiring_tokens() -> dict[str, int]:
    """Beat: enqueue a refresh for every token near expiry or idle for a day; also give a
    clear error to connections stuck in ``validating``."""
    due = tokens.connections_due_for_refresh()
    for connection_id in due:
        publish_now(REFRESH_TOKEN, connection_id=connection_id)
    stuck = activation.expire_stale_validations()
    return {"refreshes_enqueued": len(due), "stale_validations": stuck}

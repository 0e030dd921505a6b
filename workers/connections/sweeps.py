"""Deleting abandoned OAuth logins: a login nobody came back from keeps its client secret and
PKCE verifier until an hour after its expiry. Beat's ``pagerduty.refresh_expiring_tokens`` runs
it every 5 minutes. (Lost validations are no longer swept here: the connection's deadline
drives them again, then ends them, ``workers.deadlines``.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete

from models import OAuthAuthorization, utcnow
from workers.core.db import affected_rows, transaction

# A login nobody came back from (the admin closed the consent page) keeps its client secret
# and PKCE verifier until this long after it expired; in that hour a late callback still
# reads "expired" rather than "unknown".
ABANDONED_LOGIN_AFTER = timedelta(hours=1)


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

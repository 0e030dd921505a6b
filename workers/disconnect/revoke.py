"""What the admin can revoke in PagerDuty after a disconnect, and the retired revocation task.

PagerDuty documents no endpoint to revoke a Scoped OAuth token (only "Revoke All Tokens" in its
App Registration page), and an API key lives until it is deleted in PagerDuty: the admin is told
what to do there (``revoke_instructions``), and nothing here calls an undocumented endpoint.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from models import AuthMethod


@dataclass
class RevokeResult:
    """``pagerduty.revoke_tokens`` is kept for senders of the old contract: nothing to do."""

    connection_id: str
    revoked: int = 0
    reason: str = (
        "PagerDuty has no token-revocation API; a disconnect deletes our copies at once and "
        "tells the admin how to revoke the app's tokens in PagerDuty."
    )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def revoke_instructions(auth_method: str, subdomain: str | None, region: str | None) -> str:
    """What the admin can do in PagerDuty after a disconnect; our copies are already gone."""
    host = "eu.pagerduty.com" if region == "eu" else "pagerduty.com"
    where = f"https://{subdomain}.{host}" if subdomain else "PagerDuty"
    if auth_method == AuthMethod.OAUTH:
        return (
            "Round Robin deleted its copies of this connection's OAuth tokens. PagerDuty offers "
            f"no API to revoke them: to end them now, open {where} > Integrations > App "
            "Registration, open your app and choose Revoke All Tokens. Otherwise the access "
            "token stops working within a day and the refresh token within 30 days."
        )
    return (
        "Round Robin deleted its copy of the API key. The key itself works until you delete "
        f"it in PagerDuty: open {where} > Integrations > API Access Keys."
    )


def revoke_tokens(connection_id: uuid.UUID | str) -> RevokeResult:
    """The retired revocation step: PagerDuty has nothing to call, so nothing is done."""
    return RevokeResult(connection_id=str(connection_id))

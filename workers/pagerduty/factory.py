"""The one place PagerDuty clients are built for our processes.

Domain code (activation's probe, the sync) depends on ``PagerDutyReader``
(``workers.pagerduty.interfaces``) and receives a factory; ``pagerduty_client`` is the real one:
the process's pooled HTTP client, the configured timeout and, when a ``rate_limit_key`` is given,
the per-credential limiter shared by every worker through Redis. Tests pass another factory (an
in-process fake over the simulator's state: ``tests/support/fake_pagerduty.py``).

The OAuth login and the token refresh depend on ``PagerDutyOAuth`` the same way and receive an
``OAuthFactory``; ``pagerduty_oauth`` is the real one (``tests/support/fake_oauth.py`` the fake).
"""

from __future__ import annotations

from typing import Protocol

from workers.core.redis import client as redis_client
from workers.core.settings import get_settings
from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.interfaces import PagerDutyOAuth, PagerDutyReader
from workers.pagerduty.oauth import accepted_issuers
from workers.pagerduty.oauth_client import OAuthClient
from workers.pagerduty.ratelimit import RateLimiter, RedisRateLimiter
from workers.pagerduty.records import Credential
from workers.pagerduty.transport import shared_http_client

# The client's own default: bounded retries inside one call, then the task retries later.
DEFAULT_MAX_RETRIES = 4


class ReaderFactory(Protocol):
    """Builds a reader for one credential at one PagerDuty API host."""

    def __call__(
        self,
        base_url: str,
        credential: Credential,
        *,
        rate_limit_key: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> PagerDutyReader: ...


def shared_rate_limiter() -> RateLimiter:
    """The per-credential budget, shared by every worker through the process's Redis client."""
    settings = get_settings()
    return RedisRateLimiter(
        redis_client(),
        per_minute=settings.pagerduty_rate_limit_per_minute,
        burst=settings.pagerduty_rate_limit_burst,
        key_prefix=settings.redis_key_prefix,
    )


def pagerduty_client(
    base_url: str,
    credential: Credential,
    *,
    rate_limit_key: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> PagerDutyClient:
    """A client on the shared HTTP pool. ``rate_limit_key`` (e.g. ``conn-<connection id>``, so a
    refreshed OAuth token keeps its bucket) turns the shared limiter on; one-off checks such as
    a key's validation run without it."""
    return PagerDutyClient(
        base_url,
        credential,
        http=shared_http_client(),
        rate_limiter=shared_rate_limiter() if rate_limit_key else None,
        rate_limit_key=rate_limit_key,
        timeout=get_settings().pagerduty_timeout_seconds,
        max_retries=max_retries,
        max_in_flight=get_settings().pagerduty_max_in_flight,
    )


class OAuthFactory(Protocol):
    """Builds the identity host's client for one OAuth app."""

    def __call__(self, client_id: str, client_secret: str) -> PagerDutyOAuth: ...


def pagerduty_oauth(client_id: str, client_secret: str) -> OAuthClient:
    """The configured identity host and issuers, the configured timeout; the JWKS is fetched
    on the shared HTTP pool."""
    settings = get_settings()
    return OAuthClient(
        settings.pagerduty_identity_url,
        client_id,
        client_secret,
        accepted_issuers(settings.pagerduty_identity_url, settings.pagerduty_id_token_issuers),
        timeout=settings.pagerduty_timeout_seconds,
        http=shared_http_client(),
    )

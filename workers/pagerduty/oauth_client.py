"""PagerDuty's identity host for one OAuth app: the real ``PagerDutyOAuth``.

The calls themselves (authlib over httpx, joserfc) are ``workers.pagerduty.oauth`` and
``workers.pagerduty.id_token``; this binds them to one app, one identity host and one set of
accepted issuers, so the login and the refresh take a factory (workers.pagerduty.factory.
pagerduty_oauth) and tests can hand them an in-process fake instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from workers.pagerduty import id_token, oauth


@dataclass(frozen=True)
class OAuthClient:
    """``transport`` carries the token endpoint's requests (authlib's own client), ``http`` the
    JWKS fetch; ``None`` means a real connection and the process's shared pool."""

    identity_url: str
    client_id: str
    client_secret: str = field(repr=False)
    issuers: tuple[str, ...]
    timeout: float = 10.0
    http: httpx.Client | None = field(default=None, repr=False)
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    # Waits between the short retries (workers.pagerduty.retrying); tests pass a no-op.
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> oauth.TokenSet:
        return oauth.exchange_code(
            self.identity_url,
            self.client_id,
            self.client_secret,
            code,
            redirect_uri,
            code_verifier,
            timeout=self.timeout,
            transport=self.transport,
            sleep=self.sleep,
        )

    def refresh(self, refresh_token: str) -> oauth.TokenSet:
        return oauth.refresh(
            self.identity_url,
            self.client_id,
            self.client_secret,
            refresh_token,
            timeout=self.timeout,
            transport=self.transport,
            sleep=self.sleep,
        )

    def verify_id_token(self, token: str) -> id_token.IdTokenClaims:
        jwks_url = oauth.jwks_endpoint(self.identity_url)
        keys = id_token.fetch_jwks(jwks_url, http=self.http, timeout=self.timeout, sleep=self.sleep)
        return id_token.verify_id_token(
            token, jwks_url, self.client_id, issuer=self.issuers, keys=keys
        )

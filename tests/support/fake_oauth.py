"""PagerDuty's identity host in this process, for the OAuth login and the token refresh.

``InProcessOAuth(pagerduty)`` builds the real ``OAuthClient`` (authlib and httpx for the token
endpoint, joserfc for the id_token: the error mapping, the short retries and every check run)
over the simulator's identity routes of an ``InProcessPagerDuty``. The simulator plays
PagerDuty: single-use codes, PKCE, refresh tokens rotated on every use, "Revoke All Tokens".
``factory`` has the shape of ``workers.pagerduty.factory.pagerduty_oauth``
(``oauth_exchange.exchange_oauth_code(..., oauth_factory=fake.factory)``); ``settings_env``
aims our settings at it (the API hosts the id_token names and the login's authorize URL).

What it can be told, in words (never a token, so a test cannot leak one through it):
``grant`` (the admin's consent: a code and its verifier), ``revoke``, ``fail`` (a status from
the token endpoint or the JWKS), ``time_out``, ``defect`` (an id_token that fails
verification, re-signed here), ``omit_scopes`` (PagerDuty grants less than asked); ``heal``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.support.fake_pagerduty import BASE_URL, InProcessPagerDuty
from workers.core.settings import get_settings, reset_settings_cache
from workers.pagerduty import oauth
from workers.pagerduty.oauth_client import OAuthClient

IDENTITY_URL = f"{BASE_URL}/identity"
TOKEN_PATH = "/identity/oauth/token"
JWKS_PATH = "/identity/global/oauth/anonymous/jwks"

Defect = Literal[
    "bad_signature",  # signed by a key that is not the one its kid names
    "unknown_kid",  # signed by a key PagerDuty's JWKS does not list
    "wrong_issuer",
    "wrong_audience",  # issued to another OAuth app
    "expired",
    "no_account",  # no account_id claim
    "unknown_region",  # names an API host that is neither our US nor our EU one
    "no_api_host",  # aud holds the client id alone: only the region claim names the region
    "not_a_jwt",
    "missing",  # no id_token in the answer at all
]


@dataclass(frozen=True)
class Grant:
    """What the admin's consent gives the login: the callback's code, the login's verifier."""

    code: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    client_id: str


class _Answers(httpx.BaseTransport):
    """The simulator's answers, as the fake was told to change them."""

    def __init__(self, fake: InProcessOAuth) -> None:
        self.fake = fake

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if any(request.url.path.startswith(path) for path in self.fake.timing_out):
            raise httpx.ReadTimeout("no answer in time", request=request)
        response = self.fake.pagerduty.transport.handle_request(request)
        fake = self.fake
        if request.url.path != TOKEN_PATH or response.status_code != 200:
            return response
        if fake.defect is None and not fake.omit_scopes:
            return response
        body = json.loads(response.content)
        body["scope"] = " ".join(s for s in body["scope"].split() if s not in fake.omit_scopes)
        if fake.defect is not None and "id_token" in body:
            body["id_token"] = fake.defective(body["id_token"])
            if body["id_token"] is None:
                del body["id_token"]
        return httpx.Response(200, json=body, headers={"cache-control": "no-store"})


class InProcessOAuth:
    def __init__(self, pagerduty: InProcessPagerDuty) -> None:
        self.pagerduty = pagerduty
        self.state = pagerduty.state
        self.state.auto_approve = True  # the admin's consent, given
        self.timing_out: set[str] = set()
        self.defect: Defect | None = None
        self.omit_scopes: frozenset[str] = frozenset()
        self.transport = _Answers(self)
        self.http = httpx.Client(transport=self.transport)
        # Another key than PagerDuty's, for the id_tokens it did not sign.
        self._stranger = RSAKey.generate_key(2048, parameters={"alg": "RS256"})

    @staticmethod
    def settings_env() -> dict[str, str]:
        """Our settings aimed at it, as ``tests/support/stack.sim_env`` for the simulator."""
        return {
            "RRPD_PAGERDUTY_API_URL": BASE_URL,
            "RRPD_PAGERDUTY_EU_API_URL": f"{BASE_URL}/eu",
            "RRPD_PAGERDUTY_IDENTITY_URL": IDENTITY_URL,
            "RRPD_PAGERDUTY_ID_TOKEN_ISSUERS": "",
        }

    def factory(self, client_id: str, client_secret: str) -> OAuthClient:
        """The real client on the in-process transport; its retries do not wait."""
        return OAuthClient(
            IDENTITY_URL,
            client_id,
            client_secret,
            oauth.accepted_issuers(IDENTITY_URL),
            http=self.http,
            transport=self.transport,
            sleep=lambda _seconds: None,
        )

    def app(self, label: str = "demo-oauth") -> tuple[str, str]:
        """An OAuth app registered at PagerDuty: its client id and secret."""
        for app in self.pagerduty.credentials()["oauth_apps"]:
            if app["label"] == label:
                return app["client_id"], app["client_secret"]
        raise KeyError(label)

    def grant(
        self, label: str = "demo-oauth", scopes: tuple[str, ...] = oauth.DEFAULT_SCOPES
    ) -> Grant:
        """The admin logs in and consents: the code PagerDuty sends to our callback."""
        client_id, _ = self.app(label)
        redirect_uri, verifier = get_settings().oauth_redirect_uri, oauth.new_code_verifier()
        url = oauth.build_authorization_url(
            IDENTITY_URL, client_id, redirect_uri, scopes, oauth.new_state(), verifier
        )
        return Grant(consent_code(url, self.http), verifier, redirect_uri, client_id)

    def revoke(self, label: str = "demo-oauth") -> None:
        """Every token of the app dies (PagerDuty's "Revoke All Tokens")."""
        self.pagerduty.control.post("/tokens/revoke", json={"app": label}).raise_for_status()

    def refuse_codes(self) -> None:
        """Every code issued so far is spent (used, or past its 30 seconds)."""
        for code in self.state.codes.values():
            code.used = True

    def refuse_client(self, label: str = "demo-oauth") -> None:
        """The app's client secret is rotated at PagerDuty: the one we hold is refused."""
        client_id, _ = self.app(label)
        self.state.apps_by_client[client_id].client_secret = secrets.token_urlsafe(24)

    def fail(self, path: str = TOKEN_PATH, status: int = 503, body: str | None = None) -> None:
        """``path`` answers ``status`` (with ``body`` as text/plain, if given)."""
        fault = {"kind": "error", "path_prefix": path, "status": status, "body": body}
        self.pagerduty.control.post("/faults", json=fault).raise_for_status()

    def answer_html(self, path: str = TOKEN_PATH) -> None:
        """``path`` answers 200 with an HTML page (a proxy in the way), not JSON."""
        fault = {"kind": "non_json", "path_prefix": path}
        self.pagerduty.control.post("/faults", json=fault).raise_for_status()

    def time_out(self, path: str = TOKEN_PATH) -> None:
        self.timing_out.add(path)

    def heal(self) -> None:
        self.pagerduty.control.delete("/faults").raise_for_status()
        self.timing_out.clear()
        self.defect, self.omit_scopes = None, frozenset()

    def requests(self, path: str = TOKEN_PATH) -> int:
        """Requests that reached PagerDuty's ``path`` (a timed-out one never did)."""
        stats = self.pagerduty.control.get("/stats").json()
        return int(stats["by_path"].get(path, 0))

    def defective(self, token: str) -> str | None:
        """``token`` (PagerDuty's, verified here) changed by ``self.defect``."""
        if self.defect == "missing":
            return None
        if self.defect == "not_a_jwt":
            return "not-a-jwt"
        key = self.state.signing_key
        claims = dict(jwt.decode(token, key).claims)
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        if self.defect == "bad_signature":
            key = self._stranger
        elif self.defect == "unknown_kid":
            key, header["kid"] = self._stranger, secrets.token_hex(8)
        elif self.defect == "wrong_issuer":
            claims["iss"] = "https://identity.example.com/global/oauth/anonymous"
        elif self.defect == "wrong_audience":
            claims["aud"] = [claims["aud"][0], "another-app"]
            claims["azp"] = "another-app"
        elif self.defect == "expired":
            claims["exp"] = claims["iat"] - 3600  # an hour before it was issued: past any leeway
        elif self.defect == "no_account":
            del claims["account_id"]
        elif self.defect == "unknown_region":
            claims["aud"] = ["https://api.example.com", claims["azp"]]
            claims.pop("region", None)
        elif self.defect == "no_api_host":
            claims["aud"] = [claims["azp"]]
        return jwt.encode(header, claims, key)


def consent_code(authorization_url: str, browser: httpx.Client) -> str:
    """The admin's browser at PagerDuty's consent page (auto-approved): the callback's code."""
    consent = browser.get(authorization_url, follow_redirects=False)
    assert consent.status_code in (302, 303), consent.text
    return parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]


@contextmanager
def in_process_oauth() -> Iterator[InProcessOAuth]:
    """A fake PagerDuty (``fake.pagerduty`` for its REST API) with our settings aimed at it
    for the block, put back after."""
    aimed = InProcessOAuth.settings_env()
    before = {name: os.environ.get(name) for name in aimed}
    os.environ.update(aimed)
    # A thread of an earlier test (the outbox's fast path) may have been reading the settings
    # as they were: read them again until the cache holds these (a value cached first stays).
    reset_settings_cache()
    while get_settings().pagerduty_identity_url != IDENTITY_URL:
        reset_settings_cache()
    try:
        with InProcessPagerDuty() as pagerduty:
            yield InProcessOAuth(pagerduty)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings_cache()

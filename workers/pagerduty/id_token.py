"""PagerDuty's OpenID id_token: verified against its JWKS, and the account and region it names."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from models.clock import utcnow
from workers.pagerduty.errors import (
    IdTokenInvalid,
    RateLimited,
    Transient,
    UnknownRegion,
    reset_after_from_headers,
)
from workers.pagerduty.retrying import Retries
from workers.pagerduty.transport import shared_http_client


@dataclass(frozen=True)
class IdTokenClaims:
    account_id: str
    user_id: str
    subdomain: str | None
    region: str | None
    api_base_url: str | None  # the API host named in ``aud``
    audience: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


# Fetched while a login waits, after PagerDuty issued its tokens: a blip is tried again at once.
JWKS_RETRIES = Retries(attempts=3, first_delay=0.5, budget=8.0)


def fetch_jwks(
    jwks_url: str,
    *,
    http: httpx.Client | None = None,
    timeout: float = 10.0,
    retries: Retries = JWKS_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> KeySet:
    """PagerDuty's signing keys. Connect errors, timeouts, 5xx, 429 and a body that is not a
    key set are ``Transient``, tried again within ``retries``."""
    return retries.call(
        lambda: _fetch_jwks_once(jwks_url, http=http, timeout=timeout),
        what="PagerDuty JWKS",
        sleep=sleep,
    )


def _fetch_jwks_once(jwks_url: str, *, http: httpx.Client | None, timeout: float) -> KeySet:
    client = http if http is not None else shared_http_client()
    endpoint = "GET /global/oauth/anonymous/jwks"
    try:
        response = client.get(jwks_url, timeout=timeout, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Transient(
            f"Could not fetch PagerDuty's JWKS ({type(exc).__name__})", endpoint=endpoint
        ) from None
    if response.status_code == 429:
        raise RateLimited(
            "PagerDuty's JWKS endpoint is rate limiting us",
            status=429,
            endpoint=endpoint,
            reset_after=reset_after_from_headers(response.headers),
        )
    if not response.is_success:
        raise Transient(
            "PagerDuty's JWKS endpoint failed", status=response.status_code, endpoint=endpoint
        )
    try:
        return KeySet.import_key_set(response.json())
    except (ValueError, JoseError, TypeError, KeyError):
        raise Transient("PagerDuty's JWKS is not a valid key set", endpoint=endpoint) from None


def verify_id_token(
    id_token: str,
    jwks_url: str,
    client_id: str,
    *,
    http: httpx.Client | None = None,
    issuer: str | Collection[str] | None = None,
    leeway: int = 60,
    now: datetime | None = None,
    keys: KeySet | None = None,
) -> IdTokenClaims:
    """Verify an RS256 id_token against PagerDuty's JWKS and return the account facts.

    Checks signature, ``exp`` (with ``leeway`` seconds), ``iss`` when given (one issuer, or
    any of several: PagerDuty's is not settled), and, when the token names a client (``azp``
    or a non-URL ``aud``), that it is ``client_id``. The URL audience is the account's API host
    (US or EU).
    """
    key_set = keys if keys is not None else fetch_jwks(jwks_url, http=http)
    endpoint = "id_token"
    try:
        token = jwt.decode(id_token, key_set, algorithms=["RS256"])
    except JoseError as exc:
        raise IdTokenInvalid(
            f"The id_token's signature does not verify ({type(exc).__name__})", endpoint=endpoint
        ) from None
    except (ValueError, TypeError):
        raise IdTokenInvalid("The id_token is not a JWT", endpoint=endpoint) from None
    claims = dict(token.claims)
    options: dict[str, Any] = {"exp": {"essential": True}}
    if issuer is not None:
        issuers = [issuer] if isinstance(issuer, str) else list(issuer)
        options["iss"] = {"essential": True, "values": issuers}
    moment = int((now or utcnow()).timestamp())
    try:
        jwt.JWTClaimsRegistry(now=moment, leeway=leeway, **options).validate(claims)
    except ExpiredTokenError:
        raise IdTokenInvalid("The id_token has expired", endpoint=endpoint) from None
    except JoseError as exc:
        raise IdTokenInvalid(
            f"The id_token's claims are invalid ({type(exc).__name__})", endpoint=endpoint
        ) from None

    raw_aud = claims.get("aud")
    audience = tuple(
        a for a in ([raw_aud] if isinstance(raw_aud, str) else raw_aud or []) if isinstance(a, str)
    )
    # PagerDuty's aud is a list: the API host and our client id; azp is the client id too
    # (decoded examples in PagerDuty's developer docs). A token that names another client, or
    # none, was not issued to this app.
    bound = {a for a in audience if not a.startswith(("https://", "http://"))}
    if isinstance(claims.get("azp"), str):
        bound.add(claims["azp"])
    if client_id not in bound:
        raise IdTokenInvalid("The id_token was not issued to this OAuth app", endpoint=endpoint)
    api_base_url = next(
        (a.rstrip("/") for a in audience if a.startswith(("https://", "http://"))), None
    )

    def text(name: str) -> str | None:
        value = claims.get(name)
        return str(value) if isinstance(value, str | int) and value != "" else None

    account_id, user_id = text("account_id"), text("user_id")
    if account_id is None or user_id is None:
        raise IdTokenInvalid("The id_token lacks account_id or user_id", endpoint=endpoint)
    return IdTokenClaims(
        account_id=account_id,
        user_id=user_id,
        subdomain=text("subdomain"),
        region=text("region"),
        api_base_url=api_base_url,
        audience=audience,
        raw=claims,
    )


def _normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def region_for_api_url(api_base_url: str, us_api_url: str, eu_api_url: str) -> Literal["us", "eu"]:
    """Map the API host named in the id_token's audience to our region.

    Exact comparison (scheme, host and path), never a prefix match: a test EU URL may extend the
    US one. Raises UnknownRegion for anything else rather than guess.
    """
    target = _normalize_url(api_base_url)
    if target == _normalize_url(eu_api_url):
        return "eu"
    if target == _normalize_url(us_api_url):
        return "us"
    raise UnknownRegion(
        "The account's PagerDuty API host is neither the configured US nor EU host",
        endpoint="id_token",
    )


def region_for_claims(
    claims: IdTokenClaims, us_api_url: str, eu_api_url: str
) -> Literal["us", "eu"]:
    """Region from ``aud`` when it names an API host, else from the ``region`` claim."""
    if claims.api_base_url:
        return region_for_api_url(claims.api_base_url, us_api_url, eu_api_url)
    region = REGION_CLAIMS.get((claims.region or "").lower())
    if region is not None:
        return region
    raise UnknownRegion("The id_token names no API host and no known region", endpoint="id_token")


# PagerDuty's id_token says "UnitedStates" (developer docs); the EU spelling is unverified, so
# the API host in ``aud`` decides first and these names are only a fallback.
REGION_CLAIMS: dict[str, Literal["us", "eu"]] = {
    "unitedstates": "us",
    "us": "us",
    "europe": "eu",
    "europeanunion": "eu",
    "eu": "eu",
}

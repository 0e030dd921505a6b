"""PagerDuty Scoped OAuth: authorize URL (PKCE S256), code exchange, refresh.

The id_token and the region it names: ``workers.pagerduty.id_token``.

PagerDuty documents no token-revocation endpoint (only "Revoke All Tokens" in its App
Registration page), so there is no revoke here: a disconnect deletes our copies and tells the
admin how to revoke in PagerDuty (workers.disconnect).

Built on authlib's httpx ``OAuth2Client``. The client authenticates with ``client_id`` and
``client_secret`` in the form body (``client_secret_post``), as PagerDuty requires alongside
PKCE. Every non-2xx token-endpoint answer is mapped to our typed errors before authlib parses it,
and no secret (client secret, code, verifier, tokens) ever reaches an error message or a log.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import authlib.deprecate  # noqa: F401 - installs its filter first, so ours below wins
import httpx

from models.clock import utcnow
from workers.pagerduty.errors import (
    InvalidClient,
    InvalidGrant,
    OAuthError,
    PagerDutyError,
    RateLimited,
    Transient,
    parse_error_body,
    redact,
    reset_after_from_headers,
)
from workers.pagerduty.records import Credential
from workers.pagerduty.retrying import Retries

with warnings.catch_warnings():
    # authlib prefers the "httpx2" fork and warns when it falls back to httpx, which we use.
    warnings.simplefilter("ignore")
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import OAuth2Client

# authlib builds its client on the "httpx2" fork when that is installed and on httpx otherwise;
# timeouts and exceptions for its calls must come from the same library, whichever it is.
_oauth_http: Any = importlib.import_module(
    next(c for c in OAuth2Client.__mro__ if c.__name__ == "Client").__module__.split(".")[0]
)

log = logging.getLogger(__name__)

# What the sync cannot work without.
REQUIRED_SCOPES: tuple[str, ...] = ("users.read", "schedules.read")
# openid makes PagerDuty return the id_token that names the account and its region;
# oncalls.read lets one /oncalls request answer for many bound schedules (fewer requests).
DEFAULT_SCOPES: tuple[str, ...] = ("openid", *REQUIRED_SCOPES, "oncalls.read")
TOKEN_ENDPOINT = "POST /oauth/token"  # noqa: S105 - a label, not a secret
# A code lives 30 s from PagerDuty's redirect: the exchange's tries all start well inside it.
EXCHANGE_RETRIES = Retries(attempts=3, first_delay=0.5, budget=12.0)
# A refresh holds the connection's lock: a few seconds of tries, then the task's own retries.
REFRESH_RETRIES = Retries(attempts=3, first_delay=0.5, budget=8.0)


def authorize_endpoint(identity_url: str) -> str:
    return identity_url.rstrip("/") + "/oauth/authorize"


def token_endpoint(identity_url: str) -> str:
    return identity_url.rstrip("/") + "/oauth/token"


def jwks_endpoint(identity_url: str) -> str:
    return issuer_for(identity_url) + "/jwks"


def issuer_for(identity_url: str) -> str:
    """The identity host's issuer: https://identity.pagerduty.com/global/oauth/anonymous."""
    return identity_url.rstrip("/") + "/global/oauth/anonymous"


# The issuer an earlier version of PagerDuty's "OpenID token" page named, that its example
# tokens carry and that its OIDC discovery reportedly names (pagerduty-facts.md, OAuth).
APP_ISSUER = "https://app.pagerduty.com/global/oauth/anonymous"


def accepted_issuers(identity_url: str, configured: str = "") -> tuple[str, ...]:
    """The id_token issuers a login accepts: ``configured`` (comma-separated) when set, else
    both documented ones. Which one PagerDuty sends is not settled, so neither is refused."""
    chosen = [i.strip().rstrip("/") for i in configured.split(",") if i.strip()]
    return tuple(dict.fromkeys(chosen or [issuer_for(identity_url), APP_ISSUER]))


@dataclass(frozen=True)
class TokenSet:
    """A token endpoint answer. ``repr`` hides every token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_at: datetime | None
    scopes: frozenset[str]
    id_token: str | None = field(default=None, repr=False)

    @property
    def credential(self) -> Credential:
        return Credential(kind="oauth", secret=self.access_token)

    def to_json(self) -> str:
        """For an encrypted column only (it holds every token)."""
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "token_type": self.token_type,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "scopes": sorted(self.scopes),
                "id_token": self.id_token,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> TokenSet:
        data = json.loads(raw)
        expires_at = data.get("expires_at")
        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token"),
            token_type=data.get("token_type") or "bearer",
            expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
            scopes=frozenset(data.get("scopes") or ()),
            id_token=data.get("id_token"),
        )

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        return check_scopes(self.scopes, REQUIRED_SCOPES)


def new_code_verifier() -> str:
    """A PKCE verifier: 64 unreserved characters (RFC 7636 allows 43-128)."""
    return str(generate_token(64))


def new_state() -> str:
    return str(generate_token(32))


def build_authorization_url(
    identity_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    code_verifier: str,
) -> str:
    """The URL to send the admin's browser to; PKCE challenge is S256 of ``code_verifier``."""
    with OAuth2Client(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        code_challenge_method="S256",
    ) as client:
        url, _ = client.create_authorization_url(
            authorize_endpoint(identity_url), state=state, code_verifier=code_verifier
        )
    return str(url)


def check_scopes(
    granted: str | Iterable[str] | None, required: Iterable[str] = REQUIRED_SCOPES
) -> tuple[str, ...]:
    """The required scopes missing from ``granted`` (a space-separated string or a list).

    PagerDuty does not refuse a scope the app lacks: it silently grants only ``openid``, so the
    granted list must be checked after every exchange.
    """
    if granted is None:
        have: set[str] = set()
    elif isinstance(granted, str):
        have = set(granted.split())
    else:
        have = set(granted)
    return tuple(scope for scope in required if scope not in have)


def _oauth_client(
    client_id: str,
    client_secret: str,
    *,
    timeout: float,
    transport: httpx.BaseTransport | None,
    secrets: Sequence[str | None],
) -> OAuth2Client:
    client = OAuth2Client(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_post",  # noqa: S106
        timeout=_oauth_http.Timeout(timeout, connect=min(timeout, 5.0)),
        transport=transport,
    )

    def check(response: Any) -> Any:
        if not response.is_success:
            response.read()
            raise _token_error(response, secrets)
        return response

    client.register_compliance_hook("access_token_response", check)
    client.register_compliance_hook("refresh_token_response", check)
    return client


def _token_error(response: Any, secrets: Sequence[str | None]) -> PagerDutyError:
    status = response.status_code
    if status == 429:
        return RateLimited(
            "PagerDuty's token endpoint is rate limiting us",
            status=status,
            endpoint=TOKEN_ENDPOINT,
            reset_after=reset_after_from_headers(response.headers),
        )
    if status >= 500 or status == 408:
        return Transient(
            "PagerDuty's token endpoint had a server error", status=status, endpoint=TOKEN_ENDPOINT
        )
    error_code: str | None = None
    description: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error_code = body["error"]
        if isinstance(body.get("error_description"), str):
            description = body["error_description"]
    else:
        _, description, _ = parse_error_body(response)
    text = f": {redact(description, secrets)}" if description else ""
    kwargs: dict[str, Any] = {"status": status, "code": error_code, "endpoint": TOKEN_ENDPOINT}
    if error_code == "invalid_grant":
        return InvalidGrant(
            "PagerDuty refused the grant (code or refresh token invalid, expired or already "
            f"used){text}",
            **kwargs,
        )
    if error_code == "invalid_client":
        return InvalidClient(f"PagerDuty refused our OAuth client id or secret{text}", **kwargs)
    what = error_code or "no RFC 6749 error code"
    return OAuthError(f"PagerDuty's token endpoint refused the request ({what}){text}", **kwargs)


def _token_set(token: dict[str, Any], secrets: Sequence[str | None]) -> TokenSet:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise Transient(
            "PagerDuty's token endpoint answered without an access_token", endpoint=TOKEN_ENDPOINT
        )
    expires_at: datetime | None = None
    expires_in = token.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = utcnow() + timedelta(seconds=float(expires_in))
    refresh = token.get("refresh_token")
    id_token = token.get("id_token")
    scope = token.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        token_type=str(token.get("token_type") or "bearer").lower(),
        expires_at=expires_at,
        scopes=frozenset(scope.split() if isinstance(scope, str) else scope or ()),
        id_token=id_token if isinstance(id_token, str) and id_token else None,
    )


def _call_token_endpoint(
    client_id: str,
    client_secret: str,
    secrets: Sequence[str | None],
    timeout: float,
    transport: httpx.BaseTransport | None,
    action: Literal["exchange", "refresh"],
    **kwargs: Any,
) -> TokenSet:
    all_secrets = (client_secret, *secrets)
    try:
        with _oauth_client(
            client_id, client_secret, timeout=timeout, transport=transport, secrets=all_secrets
        ) as client:
            if action == "exchange":
                token = client.fetch_token(grant_type="authorization_code", **kwargs)
            else:
                token = client.refresh_token(**kwargs)
    except PagerDutyError:
        raise
    except _oauth_http.TimeoutException:
        raise Transient(
            "PagerDuty's token endpoint did not answer in time", endpoint=TOKEN_ENDPOINT
        ) from None
    except _oauth_http.TransportError as exc:
        raise Transient(
            f"Could not reach PagerDuty's token endpoint ({type(exc).__name__})",
            endpoint=TOKEN_ENDPOINT,
        ) from None
    except ValueError:
        # authlib: a 2xx body that is not a JSON object.
        raise Transient(
            "PagerDuty's token endpoint answered with a body that is not JSON",
            endpoint=TOKEN_ENDPOINT,
        ) from None
    return _token_set(dict(token), all_secrets)


def exchange_code(
    identity_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    retries: Retries = EXCHANGE_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenSet:
    """Trade an authorization code (valid 30 s) for tokens.

    Tried again only when PagerDuty did not answer (connect error, timeout, 5xx, 429), within
    the code's life. A code PagerDuty refused is final; one it consumed before its answer was
    lost comes back ``invalid_grant`` on the next try, the same end as not trying again.
    """
    return retries.call(
        lambda: _call_token_endpoint(
            client_id,
            client_secret,
            (code, code_verifier),
            timeout,
            transport,
            "exchange",
            url=token_endpoint(identity_url),
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        ),
        what="PagerDuty token endpoint (code exchange)",
        sleep=sleep,
    )


def refresh(
    identity_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    retries: Retries = REFRESH_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenSet:
    """A new token set. PagerDuty rotates the refresh token: store the new one before using the
    access token, and never refresh the same connection twice at once (hold a lock).

    Tried again only when PagerDuty did not answer (as ``exchange_code``): a refused token is
    final, and a retry after a lost answer ends as the task's own retry would."""
    return retries.call(
        lambda: _call_token_endpoint(
            client_id,
            client_secret,
            (refresh_token,),
            timeout,
            transport,
            "refresh",
            url=token_endpoint(identity_url),
            refresh_token=refresh_token,
        ),
        what="PagerDuty token endpoint (refresh)",
        sleep=sleep,
    )

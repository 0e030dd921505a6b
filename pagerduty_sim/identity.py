"""OAuth 2.0 identity service (identity.pagerduty.com): authorize, token, JWKS.

There is no token-revocation endpoint: PagerDuty documents none (only "Revoke All Tokens" in the
App Registration UI, which the control API models as `POST /_sim/oauth_apps/{label}/revoke_all`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .http import base_url, json_response
from .scenario import OAuthApp
from .state import AuthCode, SimState, Token

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    """RFC 6749 §5.2 error body."""
    return json_response({"error": error, "error_description": description}, status, NO_STORE)


def _redirect_allowed(app: OAuthApp, uri: str) -> bool:
    if app.redirect_uris:
        return uri in app.redirect_uris
    parts = urlsplit(uri)
    # no registered URIs: any loopback callback is allowed (handy for local runs and tests)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _with_params(uri: str, params: dict[str, str]) -> str:
    sep = "&" if urlsplit(uri).query else "?"
    return uri + sep + urlencode(params)


def _state_back(state: SimState, p: dict[str, str]) -> dict[str, str]:
    """The ``state`` for the redirect: echoed (RFC 6749 4.1.2), unless the ``echo_state``
    setting is off. PagerDuty's pages show its redirect without one (facts, OAuth)."""
    return {"state": p["state"]} if "state" in p and state.echo_state else {}


def _error_page(message: str, status: int = 400) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>Authorization error</title><h1>Authorization error</h1>"
        f"<p>{html.escape(message)}</p>",
        status_code=status,
    )


def granted_scopes(app: OAuthApp, requested: str) -> list[str]:
    """Facts: asking for any scope the app lacks is not an error; only `openid` is granted."""
    asked = requested.split()
    if not asked:
        return ["openid"]
    if any(s not in app.scopes for s in asked):
        return ["openid"]
    return list(dict.fromkeys(asked))


def _check_authorize(state: SimState, p: dict[str, str]) -> tuple[OAuthApp | None, Response | None]:
    """Validate an authorize request; errors before redirect_uri is trusted are shown, not sent."""
    app = state.apps_by_client.get(p.get("client_id", ""))
    if app is None:
        return None, _error_page("Unknown client_id.")
    redirect_uri = p.get("redirect_uri", "")
    if not redirect_uri or not _redirect_allowed(app, redirect_uri):
        return None, _error_page("The redirect_uri is not registered for this application.")
    back = _state_back(state, p)
    if p.get("response_type") != "code":
        return None, RedirectResponse(
            _with_params(redirect_uri, {"error": "unsupported_response_type", **back}), 302
        )
    if not p.get("code_challenge") or p.get("code_challenge_method") != "S256":
        return None, RedirectResponse(
            _with_params(
                redirect_uri,
                {
                    "error": "invalid_request",
                    "error_description": "PKCE with code_challenge_method=S256 is required",
                    **back,
                },
            ),
            302,
        )
    return app, None


def _issue_code(state: SimState, app: OAuthApp, user_id: str, p: dict[str, str]) -> Response:
    code = AuthCode(
        code=secrets.token_urlsafe(24),
        app=app,
        user_id=user_id,
        redirect_uri=p["redirect_uri"],
        scopes=granted_scopes(app, p.get("scope", "")),
        code_challenge=p["code_challenge"],
        issued_at=state.now(),
    )
    state.codes[code.code] = code
    params = {"code": code.code, **_state_back(state, p)}
    return RedirectResponse(_with_params(p["redirect_uri"], params), 302)


AUTH_FIELDS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


async def authorize_get(state: SimState, request: Request) -> Response:
    p = dict(request.query_params)
    app, err = _check_authorize(state, p)
    if err is not None:
        return err
    assert app is not None
    acct = state.accounts[app.account_id]
    default_user = app.authorize_as or next(iter(acct.users), None)
    if default_user is None:
        return _error_page("The account has no users to authorize as.")
    if state.auto_approve:
        return _issue_code(state, app, default_user, p)
    hidden = "".join(
        f'<input type="hidden" name="{f}" value="{html.escape(p[f])}">'
        for f in AUTH_FIELDS
        if f in p
    )
    options = "".join(
        f'<option value="{html.escape(u.id)}"{" selected" if u.id == default_user else ""}>'
        f"{html.escape(u.name)} &lt;{html.escape(u.email)}&gt; ({html.escape(u.role)})</option>"
        for u in acct.users.values()
    )
    asked = p.get("scope", "").split()
    scope_items = (
        "".join(f"<li><code>{html.escape(s)}</code></li>" for s in asked) or "<li>(none)</li>"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>Authorize {html.escape(app.name)} - PagerDuty (simulator)</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:3em auto}}
button{{font-size:1.1em;margin-right:1em}}</style>
</head><body>
<h1>Authorize {html.escape(app.name)}</h1>
<p><b>{html.escape(app.name)}</b> wants access to the PagerDuty account
<b>{html.escape(acct.name)}</b> ({html.escape(acct.subdomain)}, region {acct.region.upper()}).</p>
<p>Requested scopes:</p><ul>{scope_items}</ul>
<form method="post" action="{html.escape(base_url(request))}/identity/oauth/authorize">
{hidden}
<p><label>Signed in as <select name="user_id">{options}</select></label></p>
<button type="submit" name="decision" value="approve" id="authorize">Authorize</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
<p><small>PagerDuty simulator consent page.</small></p>
</body></html>"""
    return HTMLResponse(page)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def authorize_post(state: SimState, request: Request) -> Response:
    p = await _form(request)
    app, err = _check_authorize(state, p)
    if err is not None:
        return err
    assert app is not None
    back = _state_back(state, p)
    if p.get("decision") != "approve":
        return RedirectResponse(
            _with_params(p["redirect_uri"], {"error": "access_denied", **back}), 302
        )
    acct = state.accounts[app.account_id]
    uid = p.get("user_id") or app.authorize_as or ""
    if uid not in acct.users:
        return _error_page("Unknown user.")
    return _issue_code(state, app, uid, p)


def _client(state: SimState, p: dict[str, str]) -> tuple[OAuthApp | None, Response | None]:
    app = state.apps_by_client.get(p.get("client_id", ""))
    secret = p.get("client_secret", "")
    if app is None or not secret or not secrets.compare_digest(secret, app.client_secret):
        return None, oauth_error("invalid_client", "Client authentication failed", 401)
    return app, None


# id_token `region` claim per account region. "UnitedStates" is PagerDuty's documented value;
# the EU spelling is not documented anywhere we found (unverified, see docs/simulator.md).
ID_TOKEN_REGION = {"us": "UnitedStates", "eu": "Europe"}
ID_TOKEN_LIFETIME = 3600  # exp is one hour after nbf in PagerDuty's decoded examples


def _at_hash(access_token: str) -> str:
    """OpenID Connect at_hash: left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def issuer(state: SimState, base: str) -> str:
    """The id_token's ``iss``. Facts (OAuth, "the issuer is not settled"): PagerDuty's page now
    says https://identity.pagerduty.com/global/oauth/anonymous (``identity``, the default); an
    earlier version, its example tokens and reportedly its discovery document say
    https://app.pagerduty.com/global/oauth/anonymous (``app``, served here under ``/app``)."""
    if state.oidc_issuer == "identity":
        return f"{base}/identity/global/oauth/anonymous"
    if state.oidc_issuer == "app":
        return f"{base}/app/global/oauth/anonymous"
    return state.oidc_issuer  # any other issuer, to test that a client refuses it


def _id_token(state: SimState, request: Request, tok: Token) -> str:
    """PagerDuty's id_token shape (developer docs, "PagerDuty OpenID token")."""
    acct = state.accounts[tok.app.account_id]
    base = base_url(request)
    now = int(state.now().timestamp())
    region_word = ID_TOKEN_REGION[acct.region]
    claims: dict[str, Any] = {
        "exp": now + ID_TOKEN_LIFETIME,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer(state, base),
        # the REST API base of the account's region, as the simulator serves it, and the client
        "aud": [base + ("/eu" if acct.region == "eu" else ""), tok.app.client_id],
        "sub": tok.user_id,
        "auth_time": int(tok.authorized_at.timestamp()),
        "iat": now,
        "purpose": "id",
        "at_hash": _at_hash(tok.value),
        "acr": f"acr:html-form:{region_word.lower()}",
        "delegation_id": tok.grant_id,
        "account_id": acct.id,
        "user_id": tok.user_id,
        "azp": tok.app.client_id,
        "amr": f"acr:html-form:{region_word.lower()}",
        "subdomain": acct.subdomain,
        "region": region_word,
        "sid": tok.grant_id.replace("-", "")[:16],
    }
    header = {"alg": "RS256", "kid": state.signing_key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, state.signing_key)


def _token_response(
    state: SimState, request: Request, access: Token, refresh: Token, *, with_id_token: bool
) -> Response:
    body: dict[str, Any] = {
        "access_token": access.value,
        "token_type": "bearer",
        "expires_in": state.access_ttl,
        "refresh_token": refresh.value,
        "scope": " ".join(access.scopes),
    }
    if with_id_token:
        # only the authorization-code exchange: a refresh answers without an id_token
        # (developer docs, OAuth functionality: the refresh response example)
        body["id_token"] = _id_token(state, request, access)
    return json_response(body, 200, NO_STORE)


def _pkce_ok(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return secrets.compare_digest(expected, challenge)


async def token(state: SimState, request: Request) -> Response:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return oauth_error("invalid_request", "The token request must be form-encoded")
    p = await _form(request)
    grant = p.get("grant_type", "")
    if grant not in ("authorization_code", "refresh_token"):
        return oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported")
    app, err = _client(state, p)
    if err is not None:
        return err
    assert app is not None
    now = state.now()
    if grant == "authorization_code":
        for name in ("code", "redirect_uri", "code_verifier"):
            if not p.get(name):
                return oauth_error("invalid_request", f"Missing parameter: {name}")
        code = state.codes.get(p["code"])
        if code is None or code.app is not app:
            return oauth_error("invalid_grant", "The authorization code is invalid")
        if code.used:
            return oauth_error("invalid_grant", "The authorization code has already been used")
        code.used = True  # single use: consumed by the first exchange attempt, good or bad
        if (now - code.issued_at).total_seconds() > state.code_ttl:
            return oauth_error("invalid_grant", "The authorization code has expired")
        if p["redirect_uri"] != code.redirect_uri:
            return oauth_error("invalid_grant", "redirect_uri does not match the authorize request")
        if not _pkce_ok(p["code_verifier"], code.code_challenge):
            return oauth_error("invalid_grant", "PKCE verification failed")
        if code.user_id not in state.accounts[app.account_id].users:
            return oauth_error("invalid_grant", "The authorizing user no longer exists")
        access, refresh = state.issue_tokens(app, code.user_id, code.scopes)
        return _token_response(state, request, access, refresh, with_id_token=True)
    # refresh_token grant with rotation: the presented refresh token dies at once
    old = state.refresh_tokens.get(p.get("refresh_token", ""))
    if old is None or old.app is not app:
        return oauth_error("invalid_grant", "The refresh token is invalid")
    if old.rotated:
        return oauth_error("invalid_grant", "The refresh token has already been used")
    if old.revoked:
        return oauth_error("invalid_grant", "The refresh token has been revoked")
    if old.expires_at <= now:
        return oauth_error("invalid_grant", "The refresh token has expired")
    if (now - old.authorized_at).total_seconds() > state.refresh_window:
        # Scoped OAuth: a 1-year rolling window from the authorization, whatever the refreshes
        return oauth_error(
            "invalid_grant", "The authorization is older than the refresh window; log in again"
        )
    if old.user_id not in state.accounts[app.account_id].users:
        return oauth_error("invalid_grant", "The authorizing user no longer exists")
    scopes = old.scopes
    if p.get("scope"):
        asked = p["scope"].split()
        if any(s not in old.scopes for s in asked):
            return oauth_error("invalid_scope", "Requested scope exceeds the original grant")
        scopes = asked
    old.rotated = True
    access, refresh = state.issue_tokens(
        app, old.user_id, scopes, grant_id=old.grant_id, authorized_at=old.authorized_at
    )
    return _token_response(state, request, access, refresh, with_id_token=False)


async def jwks(state: SimState, request: Request) -> Response:
    return json_response({"keys": [state.signing_key.as_dict(private=False)]})


ROUTES = {
    ("GET", "/identity/oauth/authorize"): authorize_get,
    ("POST", "/identity/oauth/authorize"): authorize_post,
    ("POST", "/identity/oauth/token"): token,
    ("GET", "/identity/global/oauth/anonymous/jwks"): jwks,
}


def client_label(state: SimState, request: Request) -> str:
    cid = request.query_params.get("client_id")
    app = state.apps_by_client.get(cid or "")
    return app.label if app else "(oauth-client)"

"""OAuth identity: consent page, PKCE + secret code flow, refresh rotation, id_token, scopes."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from pagerduty_sim.server import SimulatorHandle
from tests.support.simulator import (
    REDIRECT,
    TokenFactory,
    api,
    authorize,
    exchange,
    get_code,
    load,
    pkce_pair,
    redirect_params,
)


def refresh(sim: SimulatorHandle, token: str, secret: str = "demo-client-secret") -> httpx.Response:  # noqa: S107
    return httpx.post(
        f"{sim.identity_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": "demo-client-id",
            "client_secret": secret,
        },
    )


def test_full_flow_with_auto_approve(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    tok = oauth_tokens()
    assert tok["token_type"] == "bearer"
    assert tok["expires_in"] == 86400
    assert tok["scope"].split() == [
        "openid",
        "users.read",
        "schedules.read",
        "oncalls.read",
        "abilities.read",
    ]
    with api(sim, bearer=tok["access_token"]) as c:
        me = c.get("/users/me")
        assert me.status_code == 200
        assert me.json()["user"]["email"] == "alice@example.com"
        assert c.get("/users", params={"limit": 1}).status_code == 200
        assert c.get("/oncalls").status_code == 200


def test_consent_page_deny_redirects_with_access_denied(sim: SimulatorHandle) -> None:
    page = authorize(sim, state="xyz")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Authorize" in page.text
    assert "Deny" in page.text
    form = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    }
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None
    resp = httpx.post(action.group(1), data={**form, "decision": "deny"})
    params = redirect_params(resp)
    assert params == {"error": "access_denied", "state": "xyz"}
    assert resp.headers["location"].startswith(REDIRECT)


def test_consent_page_authorize_issues_code_for_the_chosen_user(sim: SimulatorHandle) -> None:
    verifier, challenge = pkce_pair()
    page = authorize(sim, challenge=challenge)
    form = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    }
    resp = httpx.post(
        f"{sim.identity_url}/oauth/authorize",
        data={**form, "decision": "approve", "user_id": "PUBOB01"},
    )
    params = redirect_params(resp)
    assert params["state"] == "st-123"
    tok = exchange(sim, params["code"], verifier).json()
    with api(sim, bearer=tok["access_token"]) as c:
        assert c.get("/users/me").json()["user"]["id"] == "PUBOB01"


def test_authorize_requires_pkce_s256(sim: SimulatorHandle) -> None:
    resp = httpx.get(
        f"{sim.identity_url}/oauth/authorize",
        params={
            "client_id": "demo-client-id",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid",
            "state": "s",
        },
    )
    assert redirect_params(resp)["error"] == "invalid_request"


def test_unknown_redirect_uri_is_not_redirected_to(sim: SimulatorHandle) -> None:
    resp = authorize(sim, redirect_uri="https://evil.example/cb")
    assert resp.status_code == 400
    assert "location" not in resp.headers


def test_pkce_failure(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    resp = exchange(sim, code, "not-the-verifier" * 3)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_verifier_is_required(sim: SimulatorHandle) -> None:
    code = get_code(sim, pkce_pair())
    resp = exchange(sim, code, "")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


def test_wrong_secret_is_invalid_client(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    resp = exchange(sim, code, pair[0], client_secret="wrong")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    # the secret must be in the body: HTTP Basic alone is not accepted
    resp = httpx.post(
        f"{sim.identity_url}/oauth/token",
        auth=("demo-client-id", "demo-client-secret"),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": pair[0],
            "redirect_uri": REDIRECT,
        },
    )
    assert resp.status_code == 401


def test_wrong_redirect_uri(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    resp = exchange(sim, code, pair[0], redirect_uri="http://127.0.0.1:9999/other")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_older_than_30_seconds_is_refused(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    sim.control.post("/clock", json={"advance_seconds": 31}).raise_for_status()
    resp = exchange(sim, code, pair[0])
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert "expired" in resp.json()["error_description"]


def test_code_at_29_seconds_still_works(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    sim.control.post("/clock", json={"advance_seconds": 29}).raise_for_status()
    assert exchange(sim, code, pair[0]).status_code == 200


def test_code_is_single_use(sim: SimulatorHandle) -> None:
    pair = pkce_pair()
    code = get_code(sim, pair)
    assert exchange(sim, code, pair[0]).status_code == 200
    again = exchange(sim, code, pair[0])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_refresh_token_dies(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    first = oauth_tokens()
    second = refresh(sim, first["refresh_token"])
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert new["access_token"] != first["access_token"]
    assert new["scope"] == first["scope"]
    old = refresh(sim, first["refresh_token"])
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"
    assert refresh(sim, new["refresh_token"]).status_code == 200
    assert refresh(sim, new["refresh_token"], secret="nope").status_code == 401


def test_expired_access_token_is_401_and_refresh_expires_after_30_days(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    tok = oauth_tokens()
    sim.control.post("/clock", json={"advance_seconds": 86400 + 1}).raise_for_status()
    with api(sim, bearer=tok["access_token"]) as c:
        resp = c.get("/users")
    assert resp.status_code == 401
    assert not resp.headers["content-type"].startswith("application/json")  # non-JSON 401
    assert refresh(sim, tok["refresh_token"]).status_code == 200
    tok2 = oauth_tokens()
    sim.control.post("/clock", json={"advance_seconds": 30 * 86400 + 1}).raise_for_status()
    assert refresh(sim, tok2["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_answers_without_an_id_token(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    first = oauth_tokens()
    assert first["id_token"]
    again = refresh(sim, first["refresh_token"]).json()
    assert "id_token" not in again
    assert again["access_token"]
    assert again["refresh_token"]
    assert again["token_type"] == "bearer"


def test_refreshes_stop_one_year_after_the_authorization(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    # Scoped OAuth: "rolling refresh window of 1 year" (developer docs, Private Apps)
    rt = oauth_tokens()["refresh_token"]
    for _ in range(12):  # refresh every 29 days: each refresh token is fresh, the grant ages
        sim.control.post("/clock", json={"advance_seconds": 29 * 86400}).raise_for_status()
        resp = refresh(sim, rt)
        assert resp.status_code == 200, resp.text
        rt = resp.json()["refresh_token"]
    sim.control.post("/clock", json={"advance_seconds": 20 * 86400}).raise_for_status()
    late = refresh(sim, rt)  # 368 days after the authorization
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    # a new authorization starts a new window
    assert refresh(sim, oauth_tokens()["refresh_token"]).status_code == 200


def test_unregistered_scope_grants_only_openid(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    tok = oauth_tokens(scope="openid users.read users.write")
    assert tok["scope"] == "openid"
    with api(sim, bearer=tok["access_token"]) as c:
        resp = c.get("/users")
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == 2010
        assert c.get("/users/me").status_code == 200  # user tokens may always read themselves


def test_scopes_are_checked_per_route(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    tok = oauth_tokens(scope="openid schedules.read")
    expected = {
        "/users": 403,
        "/users/PUBOB01": 403,
        "/schedules": 200,
        "/schedules/PSPRIMA": 200,
        "/schedules/PSPRIMA/users": 403,
        "/v3/schedules": 200,
        "/oncalls": 403,
        "/abilities": 403,
    }
    with api(sim, bearer=tok["access_token"]) as c:
        got = {path: c.get(path).status_code for path in expected}
    assert got == expected


def _claims(sim: SimulatorHandle, id_token: str) -> dict[str, Any]:
    jwks = httpx.get(f"{sim.identity_url}/global/oauth/anonymous/jwks").json()
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks))
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["kid"]
    return dict(decoded.claims)


def test_id_token_has_pagerdutys_shape(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    # developer docs, "PagerDuty OpenID token": decoded example
    tok = oauth_tokens()
    claims = _claims(sim, tok["id_token"])
    assert claims["iss"] == f"{sim.identity_url}/global/oauth/anonymous"
    assert claims["aud"] == [sim.base_url, "demo-client-id"]  # a list: region API base + client
    assert claims["azp"] == "demo-client-id"
    assert claims["region"] == "UnitedStates"
    assert claims["exp"] - claims["nbf"] == 3600
    assert claims["iat"] == claims["nbf"]
    assert (claims["account_id"], claims["user_id"], claims["subdomain"]) == (
        "acme",
        "PUALICE",
        "acme",
    )
    assert claims["sub"] == "PUALICE"
    assert claims["purpose"] == "id"
    assert claims["jti"]
    assert claims["sid"]
    assert claims["at_hash"]
    assert claims["acr"] == claims["amr"] == "acr:html-form:unitedstates"
    delegation = claims["delegation_id"]
    assert len(delegation) == 36  # a UUID, kept for the whole authorization
    listed = sim.control.get("/tokens").json()["tokens"]
    assert {t["delegation_id"] for t in listed} == {delegation}
    again = oauth_tokens()
    assert _claims(sim, again["id_token"])["delegation_id"] != delegation


def test_eu_app_token_works_only_on_eu(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    tok = oauth_tokens(client_id="euco-client-id", client_secret="euco-client-secret")
    claims = _claims(sim, tok["id_token"])
    assert claims["aud"] == [sim.eu_base_url, "euco-client-id"]
    assert claims["region"] == "Europe"  # PagerDuty's EU value is not documented (docs)
    assert claims["iss"] == f"{sim.identity_url}/global/oauth/anonymous"  # one global issuer
    with api(sim, bearer=tok["access_token"], eu=True) as c:
        assert c.get("/users/me").json()["user"]["email"] == "anna@euco.example"
    with api(sim, bearer=tok["access_token"]) as c:
        assert c.get("/users").status_code == 401


def test_there_is_no_revocation_endpoint(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    # PagerDuty documents none: only "Revoke All Tokens" in the App Registration UI
    tok = oauth_tokens()
    resp = httpx.post(
        f"{sim.identity_url}/oauth/revoke",
        data={
            "token": tok["refresh_token"],
            "client_id": "demo-client-id",
            "client_secret": "demo-client-secret",
        },
    )
    unknown = httpx.post(f"{sim.identity_url}/oauth/no-such-thing", data={"x": "1"})
    assert resp.status_code == unknown.status_code == 404
    assert resp.content == unknown.content
    with api(sim, bearer=tok["access_token"]) as c:
        assert c.get("/users").status_code == 200  # still valid
    assert refresh(sim, tok["refresh_token"]).status_code == 200


def test_revoke_all_tokens_of_an_app(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    tok = oauth_tokens()
    bob = oauth_tokens(client_id="demo-bob-client-id", client_secret="demo-bob-client-secret")
    resp = sim.control.post("/oauth_apps/demo-oauth/revoke_all")
    assert resp.status_code == 200
    assert resp.json()["revoked"] == 2
    with api(sim, bearer=tok["access_token"]) as c:
        resp = c.get("/users")
        assert resp.status_code == 401
        assert not resp.headers["content-type"].startswith("application/json")
    assert refresh(sim, tok["refresh_token"]).json()["error"] == "invalid_grant"
    with api(sim, bearer=bob["access_token"]) as c:
        assert c.get("/users").status_code == 200  # another app's tokens live on
    assert sim.control.post("/oauth_apps/nope/revoke_all").status_code == 404


def test_control_revocation_and_expiry(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    tok2 = oauth_tokens()
    revoked = sim.control.post("/tokens/revoke", json={"app": "demo-oauth"}).json()
    assert revoked["revoked"] >= 2
    with api(sim, bearer=tok2["access_token"]) as c:
        assert c.get("/users").status_code == 401
    tok3 = oauth_tokens()
    sim.control.post("/tokens/expire", json={"token": tok3["access_token"]}).raise_for_status()
    with api(sim, bearer=tok3["access_token"]) as c:
        assert c.get("/users").status_code == 401
    assert refresh(sim, tok3["refresh_token"]).status_code == 200


RESTRICTED: dict[str, Any] = {
    "accounts": [
        {
            "id": "res",
            "subdomain": "res",
            "users": [
                {"id": "PUADMIN", "name": "Ada", "email": "ada@res.example", "role": "admin"},
                {"id": "PUPLAIN", "name": "Pat", "email": "pat@res.example", "role": "user"},
            ],
            "schedules": [
                {
                    "id": "PSOPEN1",
                    "name": "Open",
                    "layers": [
                        {
                            "start": "2024-01-01T00:00:00Z",
                            "rotation_turn_length_seconds": 86400,
                            "users": ["PUPLAIN"],
                        }
                    ],
                },
                {
                    "id": "PSSECRT",
                    "name": "Secret",
                    "restricted": True,
                    "layers": [
                        {
                            "start": "2024-01-01T00:00:00Z",
                            "rotation_turn_length_seconds": 86400,
                            "users": ["PUADMIN"],
                        }
                    ],
                },
            ],
            "escalation_policies": [
                {
                    "id": "PEPRES1",
                    "name": "P",
                    "rules": [
                        {"targets": [{"type": "schedule", "id": "PSOPEN1"}]},
                        {"targets": [{"type": "schedule", "id": "PSSECRT"}]},
                    ],
                }
            ],
        }
    ],
    "oauth_apps": [
        {
            "label": "res-admin",
            "client_id": "res-admin",
            "client_secret": "s1",
            "account": "res",
            "scopes": "openid users.read schedules.read oncalls.read",
            "authorize_as": "PUADMIN",
        },
        {
            "label": "res-user",
            "client_id": "res-user",
            "client_secret": "s2",
            "account": "res",
            "scopes": "openid users.read schedules.read oncalls.read",
            "authorize_as": "PUPLAIN",
        },
    ],
}


def test_non_admin_token_sees_fewer_schedules(
    sim: SimulatorHandle, oauth_tokens: TokenFactory
) -> None:
    load(sim, RESTRICTED)
    scope = "openid users.read schedules.read oncalls.read"
    admin = oauth_tokens(client_id="res-admin", client_secret="s1", scope=scope)
    plain = oauth_tokens(client_id="res-user", client_secret="s2", scope=scope)
    with api(sim, bearer=admin["access_token"]) as c:
        assert {s["id"] for s in c.get("/schedules").json()["schedules"]} == {"PSOPEN1", "PSSECRT"}
        assert len(c.get("/oncalls").json()["oncalls"]) == 2
    with api(sim, bearer=plain["access_token"]) as c:
        assert {s["id"] for s in c.get("/schedules").json()["schedules"]} == {"PSOPEN1"}
        assert c.get("/schedules/PSSECRT").status_code == 403
        assert [o["schedule"]["id"] for o in c.get("/oncalls").json()["oncalls"]] == ["PSOPEN1"]


def test_redirect_keeps_existing_query(sim: SimulatorHandle) -> None:
    sim.control.post("/auto_approve", json={"enabled": True}).raise_for_status()
    resp = authorize(sim, redirect_uri="http://localhost:5000/cb?tenant=7")
    loc = urlsplit(resp.headers["location"])
    q = parse_qs(loc.query)
    assert q["tenant"] == ["7"]
    assert "code" in q
    assert q["state"] == ["st-123"]


def test_id_token_issuer_is_a_setting(sim: SimulatorHandle, oauth_tokens: TokenFactory) -> None:
    """Facts (OAuth): PagerDuty's id_token issuer is not settled; the simulator sends either
    documented one, or any other to test a client's refusal."""

    def issuer() -> str:
        return str(_claims(sim, oauth_tokens()["id_token"])["iss"])

    assert sim.control.get("/settings").json()["id_token_issuer"] == "identity"
    assert issuer() == f"{sim.identity_url}/global/oauth/anonymous" == sim.issuer("identity")
    sim.control.post("/settings", json={"id_token_issuer": "app"}).raise_for_status()
    assert issuer() == f"{sim.base_url}/app/global/oauth/anonymous" == sim.issuer("app")
    sim.control.post(
        "/settings", json={"id_token_issuer": "https://elsewhere.example/oauth"}
    ).raise_for_status()
    assert issuer() == "https://elsewhere.example/oauth"
    bad = sim.control.post("/settings", json={"id_token_issuer": "nowhere"})
    assert bad.status_code == 400
    sim.control.post("/reset").raise_for_status()
    assert sim.control.get("/settings").json()["id_token_issuer"] == "identity"


def test_the_redirect_can_leave_out_state(sim: SimulatorHandle) -> None:
    """Facts (OAuth): no PagerDuty page mentions `state` in its redirect (shown as
    `{REDIRECT_URI}?code=...`); RFC 6749 says it is echoed, the simulator's default."""
    assert sim.control.get("/settings").json()["echo_state"] is True
    sim.control.post("/settings", json={"echo_state": False}).raise_for_status()
    sim.control.post("/auto_approve", json={"enabled": True}).raise_for_status()
    approved = redirect_params(authorize(sim, state="st-1"))
    assert set(approved) == {"code"}
    sim.control.post("/auto_approve", json={"enabled": False}).raise_for_status()
    page = authorize(sim, state="st-2")
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    denied = httpx.post(f"{sim.identity_url}/oauth/authorize", data={**form, "decision": "deny"})
    assert redirect_params(denied) == {"error": "access_denied"}
    sim.control.post("/reset").raise_for_status()
    assert sim.control.get("/settings").json()["echo_state"] is True

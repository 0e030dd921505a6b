"""PagerDuty's identity host through the real ``OAuthClient``, in this process.

The simulator answers as PagerDuty does (tests/support/fake_oauth.py); authlib, httpx and joserfc
run for real. What a login or a refresh would see: the tokens, their scopes, the account the
id_token names, or the error and its words, which never hold a code, a verifier or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from models import utcnow
from tests.support.fake_oauth import (
    JWKS_PATH,
    TOKEN_PATH,
    Defect,
    InProcessOAuth,
    in_process_oauth,
)
from workers.core.settings import get_settings
from workers.pagerduty.errors import (
    IdTokenInvalid,
    InvalidClient,
    InvalidGrant,
    OAuthError,
    RateLimited,
    Transient,
    UnknownRegion,
)
from workers.pagerduty.id_token import region_for_claims
from workers.pagerduty.oauth import DEFAULT_SCOPES, TokenSet
from workers.pagerduty.oauth_client import OAuthClient


@pytest.fixture
def fake() -> Iterator[InProcessOAuth]:
    with in_process_oauth() as identity:
        yield identity


def _client(
    fake: InProcessOAuth, secret: str | None = None, label: str = "demo-oauth"
) -> OAuthClient:
    client_id, client_secret = fake.app(label)
    return fake.factory(client_id, secret or client_secret)


def _logged_in(fake: InProcessOAuth, label: str = "demo-oauth") -> TokenSet:
    grant = fake.grant(label)
    return _client(fake, label=label).exchange_code(
        grant.code, grant.redirect_uri, grant.code_verifier
    )


def _region(fake: InProcessOAuth, tokens: TokenSet, label: str = "demo-oauth") -> str:
    assert tokens.id_token is not None
    settings = get_settings()
    claims = _client(fake, label=label).verify_id_token(tokens.id_token)
    return region_for_claims(claims, settings.pagerduty_api_url, settings.pagerduty_eu_api_url)


def test_a_granted_code_gives_tokens_that_name_the_account(fake: InProcessOAuth) -> None:
    tokens = _logged_in(fake)

    assert tokens.scopes == frozenset(DEFAULT_SCOPES)
    assert tokens.missing_scopes == ()
    assert tokens.expires_at is not None
    assert tokens.expires_at > utcnow() + timedelta(minutes=30)
    assert tokens.id_token is not None
    claims = _client(fake).verify_id_token(tokens.id_token)
    assert (claims.account_id, claims.subdomain) == ("acme", "acme")
    assert _region(fake, tokens) == "us"
    assert tokens.access_token not in repr(tokens)


def test_a_code_works_once(fake: InProcessOAuth) -> None:
    grant = fake.grant()
    client = _client(fake)
    client.exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)

    with pytest.raises(InvalidGrant) as refused:
        client.exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)
    assert "already used" in str(refused.value)
    assert grant.code not in str(refused.value)


def test_a_code_with_another_verifier_is_refused(fake: InProcessOAuth) -> None:
    grant = fake.grant()
    with pytest.raises(InvalidGrant) as refused:
        _client(fake).exchange_code(grant.code, grant.redirect_uri, "x" * 64)
    assert "PKCE" in str(refused.value)


def test_a_wrong_client_secret_is_refused_and_not_repeated(fake: InProcessOAuth) -> None:
    grant = fake.grant()
    wrong = "wrong-secret-0123456789"
    with pytest.raises(InvalidClient) as refused:
        _client(fake, secret=wrong).exchange_code(
            grant.code, grant.redirect_uri, grant.code_verifier
        )
    words = f"{refused.value} {refused.value!r}"
    assert "client id or secret" in words
    for secret in (wrong, grant.code, grant.code_verifier):
        assert secret not in words


def test_a_refresh_rotates_the_refresh_token(fake: InProcessOAuth) -> None:
    first = _logged_in(fake)
    assert first.refresh_token is not None
    client = _client(fake)

    second = client.refresh(first.refresh_token)

    assert second.refresh_token not in (None, first.refresh_token)
    assert second.access_token != first.access_token
    assert second.scopes == first.scopes
    with pytest.raises(InvalidGrant):  # the used one died with its use
        client.refresh(first.refresh_token)
    assert second.refresh_token is not None
    assert client.refresh(second.refresh_token).access_token


def test_a_revoked_refresh_token_is_refused(fake: InProcessOAuth) -> None:
    tokens = _logged_in(fake)
    assert tokens.refresh_token is not None
    fake.revoke()
    with pytest.raises(InvalidGrant) as refused:
        _client(fake).refresh(tokens.refresh_token)
    assert tokens.refresh_token not in str(refused.value)


@pytest.mark.parametrize(
    ("status", "error"), [(503, Transient), (500, Transient), (429, RateLimited)]
)
def test_a_token_endpoint_that_fails_is_tried_three_times(
    fake: InProcessOAuth, status: int, error: type[Exception]
) -> None:
    tokens = _logged_in(fake)
    assert tokens.refresh_token is not None
    before = fake.requests()
    fake.fail(status=status)
    with pytest.raises(error):
        _client(fake).refresh(tokens.refresh_token)
    assert fake.requests() - before == 3
    fake.heal()  # and the refresh token was never spent
    assert _client(fake).refresh(tokens.refresh_token).access_token


def test_a_token_endpoint_that_does_not_answer_is_transient(fake: InProcessOAuth) -> None:
    grant = fake.grant()
    fake.time_out()
    with pytest.raises(Transient, match="did not answer in time"):
        _client(fake).exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)
    fake.heal()  # the code never reached PagerDuty: it still works
    assert _client(fake).exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)


def test_fewer_scopes_than_asked_are_named(fake: InProcessOAuth) -> None:
    fake.omit_scopes = frozenset({"schedules.read"})
    assert _logged_in(fake).missing_scopes == ("schedules.read",)


def test_an_app_without_a_scope_gets_only_openid(fake: InProcessOAuth) -> None:
    # PagerDuty does not refuse a scope the app lacks: it grants openid alone.
    grant = fake.grant(scopes=(*DEFAULT_SCOPES, "incidents.write"))
    tokens = _client(fake).exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)
    assert tokens.scopes == {"openid"}
    assert tokens.missing_scopes == ("users.read", "schedules.read")


@pytest.mark.parametrize(
    ("defect", "words"),
    [
        ("bad_signature", "signature does not verify"),
        ("unknown_kid", "signature does not verify"),
        ("wrong_issuer", "claims are invalid"),
        ("wrong_audience", "not issued to this OAuth app"),
        ("expired", "has expired"),
        ("no_account", "lacks account_id or user_id"),
    ],
)
def test_an_id_token_that_fails_verification_says_why(
    fake: InProcessOAuth, defect: Defect, words: str
) -> None:
    fake.defect = defect
    tokens = _logged_in(fake)
    assert tokens.id_token is not None
    with pytest.raises(IdTokenInvalid) as invalid:
        _client(fake).verify_id_token(tokens.id_token)
    assert words in str(invalid.value)
    assert tokens.id_token not in str(invalid.value)


def test_an_id_token_naming_another_api_host_has_no_region(fake: InProcessOAuth) -> None:
    fake.defect = "unknown_region"
    with pytest.raises(UnknownRegion):
        _region(fake, _logged_in(fake))


def test_an_answer_without_an_id_token_is_kept_without_one(fake: InProcessOAuth) -> None:
    fake.defect = "missing"
    assert _logged_in(fake).id_token is None


@pytest.mark.parametrize("fault", ["fail", "time_out"])
def test_signing_keys_that_do_not_come_are_transient(fake: InProcessOAuth, fault: str) -> None:
    tokens = _logged_in(fake)
    assert tokens.id_token is not None
    getattr(fake, fault)(JWKS_PATH)
    with pytest.raises(Transient):
        _client(fake).verify_id_token(tokens.id_token)
    assert fake.requests(JWKS_PATH) == (3 if fault == "fail" else 0)


def test_an_eu_account_is_told_apart_by_the_api_host_its_id_token_names(
    fake: InProcessOAuth,
) -> None:
    assert _region(fake, _logged_in(fake, "euco-oauth"), "euco-oauth") == "eu"


def test_an_id_token_naming_no_api_host_is_placed_by_its_region_claim(
    fake: InProcessOAuth,
) -> None:
    fake.defect = "no_api_host"
    assert _region(fake, _logged_in(fake)) == "us"


def test_an_id_token_that_is_no_jwt_is_refused(fake: InProcessOAuth) -> None:
    fake.defect = "not_a_jwt"
    tokens = _logged_in(fake)
    assert tokens.id_token is not None
    with pytest.raises(IdTokenInvalid):
        _client(fake).verify_id_token(tokens.id_token)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"error": "invalid_request", "error_description": "no"}', "(invalid_request): no"),
        ("Bad Request", "(no RFC 6749 error code)"),
    ],
)
def test_another_refusal_is_final_and_says_what_pagerduty_said(
    fake: InProcessOAuth, body: str, words: str
) -> None:
    grant = fake.grant()
    fake.fail(status=400, body=body)
    with pytest.raises(OAuthError) as refused:
        _client(fake).exchange_code(grant.code, grant.redirect_uri, grant.code_verifier)
    assert not isinstance(refused.value, InvalidGrant | InvalidClient)
    assert words in str(refused.value)
    assert fake.requests() == 1  # a refusal is not tried again


@pytest.mark.parametrize(("path", "words"), [(TOKEN_PATH, "not JSON"), (JWKS_PATH, "key set")])
def test_an_html_page_instead_of_json_is_transient(
    fake: InProcessOAuth, path: str, words: str
) -> None:
    tokens = _logged_in(fake)
    assert tokens.refresh_token is not None
    assert tokens.id_token is not None
    fake.answer_html(path)
    client = _client(fake)
    call = client.refresh if path == TOKEN_PATH else client.verify_id_token
    token = tokens.refresh_token if path == TOKEN_PATH else tokens.id_token
    with pytest.raises(Transient, match=words):
        call(token)


def test_rate_limited_signing_keys_are_rate_limited(fake: InProcessOAuth) -> None:
    tokens = _logged_in(fake)
    assert tokens.id_token is not None
    fake.fail(JWKS_PATH, status=429)
    with pytest.raises(RateLimited):
        _client(fake).verify_id_token(tokens.id_token)

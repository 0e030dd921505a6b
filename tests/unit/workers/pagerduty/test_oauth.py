"""OAuth pieces that need no PagerDuty: which id_token issuers a login accepts, a kept token
set. Against PagerDuty (in-process): test_oauth_client.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.core.settings import Settings
from workers.pagerduty import oauth

PAGERDUTY_IDENTITY = "https://identity.pagerduty.com"


def test_both_documented_issuers_are_accepted_by_default() -> None:
    # pagerduty-facts.md, OAuth: "The issuer is not settled".
    assert oauth.accepted_issuers(PAGERDUTY_IDENTITY) == (
        "https://identity.pagerduty.com/global/oauth/anonymous",
        "https://app.pagerduty.com/global/oauth/anonymous",
    )


def test_configured_issuers_replace_the_default() -> None:
    configured = " https://app.pagerduty.com/global/oauth/anonymous/ , https://x.example/iss"
    assert oauth.accepted_issuers(PAGERDUTY_IDENTITY, configured) == (
        "https://app.pagerduty.com/global/oauth/anonymous",
        "https://x.example/iss",
    )


def test_the_setting_keeps_only_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRPD_PAGERDUTY_ID_TOKEN_ISSUERS", " https://a.example/iss ,, ")
    assert Settings().pagerduty_id_token_issuers == "https://a.example/iss"


def test_a_token_set_survives_its_encrypted_round_trip() -> None:
    tokens = oauth.TokenSet(
        access_token="at",
        refresh_token="rt",
        token_type="bearer",
        expires_at=datetime(2026, 12, 8, 9, 0, tzinfo=UTC),
        scopes=frozenset({"openid", "users.read"}),
        id_token="a.b.c",
    )
    assert oauth.TokenSet.from_json(tokens.to_json()) == tokens

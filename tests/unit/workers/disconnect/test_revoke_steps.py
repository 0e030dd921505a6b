"""What the admin is told to revoke at PagerDuty, and the retired revoke step (no PagerDuty
call)."""

from __future__ import annotations

import uuid

import pytest

from workers.disconnect import revoke

pytestmark = pytest.mark.postgres_only


def test_revoke_instructions_tell_the_admin_where_to_revoke() -> None:
    oauth_words = revoke.revoke_instructions("oauth", "acme", "us")
    assert "https://acme.pagerduty.com" in oauth_words
    assert "App Registration" in oauth_words
    assert "Revoke All Tokens" in oauth_words
    key_words = revoke.revoke_instructions("api_key", "euco", "eu")
    assert "https://euco.eu.pagerduty.com" in key_words
    assert "API Access Keys" in key_words


def test_the_retired_revoke_step_does_nothing() -> None:
    result = revoke.revoke_tokens(str(uuid.uuid4()))
    assert result.revoked == 0
    assert "no token-revocation API" in result.reason

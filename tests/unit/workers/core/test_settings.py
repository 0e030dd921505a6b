from __future__ import annotations

from pathlib import Path

import pytest

from workers.core.settings import ConfigurationError, Settings
from workers.core.startup import check_configuration


def test_reads_rrpd_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRPD_PAGERDUTY_API_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("RRPD_SYNC_INTERVAL_SECONDS", "42")
    s = Settings()
    assert s.api_base_url("us") == "http://127.0.0.1:9"
    assert s.sync_interval_seconds == 42


def test_the_sync_lease_and_its_recheck_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.core.settings import reset_settings_cache
    from workers.sync.coalescing import lease_seconds, recheck_after_seconds

    assert Settings().sync_lease_seconds == 15
    monkeypatch.setenv("RRPD_SYNC_LEASE_SECONDS", "3")
    reset_settings_cache()
    try:
        assert (lease_seconds(), recheck_after_seconds()) == (3.0, 5.0)
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_eu_region_uses_eu_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRPD_PAGERDUTY_EU_API_URL", "http://eu.example/")
    assert Settings().api_base_url("eu") == "http://eu.example"


def test_local_defaults_use_sqlite_under_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RRPD_DATABASE_URL", raising=False)
    s = Settings(var_dir=tmp_path, database_url="")
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'rrpd.sqlite3'}"


def test_production_without_encryption_key_refuses_to_start(tmp_path: Path) -> None:
    s = Settings(
        env="production",
        encryption_keys="",
        api_jwt_secret="x" * 40,
        var_dir=tmp_path,
        database_url="postgresql://db/rrpd",
    )
    with pytest.raises(ConfigurationError, match="RRPD_ENCRYPTION_KEYS is not set"):
        check_configuration(s)
    assert not (tmp_path / "encryption.key").exists(), "production must never generate a key"


def test_production_without_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    s = Settings(
        env="production",
        encryption_keys="k1=" + "a" * 43 + "=",
        api_jwt_secret="",
        var_dir=tmp_path,
        database_url="postgresql://db/rrpd",
    )
    with pytest.raises(ConfigurationError, match="RRPD_API_JWT_SECRET is not set"):
        check_configuration(s)


def test_production_refuses_sqlite(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    s = Settings(
        env="production",
        encryption_keys=f"k1={Fernet.generate_key().decode()}",
        api_jwt_secret="x" * 40,
        var_dir=tmp_path,
        database_url="",
    )
    with pytest.raises(ConfigurationError, match="SQLite"):
        check_configuration(s)


def test_local_mode_generates_key_once_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(env="local", encryption_keys="", var_dir=tmp_path)
    with caplog.at_level("WARNING"):
        first = s.encryption_key_material()
    assert "Generated a local secret" in caplog.text
    assert (tmp_path / "encryption.key").stat().st_mode & 0o077 == 0, "key file must be private"
    assert (
        Settings(env="local", encryption_keys="", var_dir=tmp_path).encryption_key_material()
        == first
    )


# --- refused values: one line per variable, naming it, its value and what is allowed -----------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RRPD_SYNC_INTERVAL_SECONDS", "0"),
        ("RRPD_SYNC_INTERVAL_SECONDS", "-5"),
        ("RRPD_SYNC_JITTER_SECONDS", "-1"),
        ("RRPD_API_JWT_TTL_SECONDS", "0"),
        ("RRPD_OAUTH_STATE_TTL_SECONDS", "-60"),
        ("RRPD_TOKEN_REFRESH_MARGIN_SECONDS", "-1"),
        ("RRPD_PAGERDUTY_TIMEOUT_SECONDS", "0"),
        ("RRPD_PAGERDUTY_TIMEOUT_SECONDS", "inf"),
        ("RRPD_PAGERDUTY_RATE_LIMIT_PER_MINUTE", "0"),
        ("RRPD_API_MAX_BODY_BYTES", "0"),
        ("RRPD_LOG_FORMAT", "yaml"),
        ("RRPD_LOG_LEVEL", "LOUD"),
        ("RRPD_PUBLIC_URL", "127.0.0.1:8000"),
        ("RRPD_PAGERDUTY_ID_TOKEN_ISSUERS", "https://ok.example,app.pagerduty.com"),
        ("RRPD_SYNC_LEASE_SECONDS", "2"),
        ("RRPD_SYNC_LEASE_SECONDS", "301"),
    ],
)
def test_zero_negative_and_unknown_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from workers.core.settings import SettingsError, load_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    (line,) = refused.value.problems
    assert line.startswith(f"{variable}={value!r} is not allowed; expected "), line


def test_each_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.core.settings import SettingsError, load_settings

    monkeypatch.setenv("RRPD_SYNC_INTERVAL_SECONDS", "abc")
    monkeypatch.setenv("RRPD_ENV", "prod")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert sorted(refused.value.problems) == [
        "RRPD_ENV='prod' is not allowed; expected one of local, test, production.",
        (
            "RRPD_SYNC_INTERVAL_SECONDS='abc' is not allowed; expected a whole number of seconds, "
            "at least 1."
        ),
    ]


def test_friendly_spellings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRPD_ENV", " Production ")
    monkeypatch.setenv("RRPD_LOG_LEVEL", "debug")
    monkeypatch.setenv("RRPD_LOG_FORMAT", "JSON")
    s = Settings()
    assert (s.env, s.log_level, s.log_format) == ("production", "DEBUG", "json")


# --- every key and the JWT secret are checked at start-up ---------------------------------------


def _production(tmp_path: Path, **overrides: str) -> Settings:
    from cryptography.fernet import Fernet

    values = {
        "env": "production",
        "encryption_keys": f"k1={Fernet.generate_key().decode()}",
        "api_jwt_secret": "x" * 40,
        "var_dir": tmp_path,
        "database_url": "postgresql://db/rrpd",
        **overrides,
    }
    return Settings(**values)


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ("k1=notafernetkey", "RRPD_ENCRYPTION_KEYS: key 'k1' is not a valid Fernet key"),
        ("dup", "RRPD_ENCRYPTION_KEYS: key id 'k1' appears more than once"),
        (" , ", "RRPD_ENCRYPTION_KEYS lists no key"),
        ("second-bad", "RRPD_ENCRYPTION_KEYS: key 'k2' is not a valid Fernet key"),
    ],
    ids=["not-fernet", "duplicate-id", "empty-list", "second-key-bad"],
)
def test_start_up_check_parses_every_encryption_key(tmp_path: Path, keys: str, words: str) -> None:
    from cryptography.fernet import Fernet

    good = Fernet.generate_key().decode()
    keys = {"dup": f"k1={good},k1={good}", "second-bad": f"k1={good},k2=short"}.get(keys, keys)
    for env in ("production", "local"):
        with pytest.raises(ConfigurationError, match=words):
            check_configuration(_production(tmp_path, env=env, encryption_keys=keys))


def test_production_refuses_a_short_jwt_secret(tmp_path: Path) -> None:
    words = "RRPD_API_JWT_SECRET is 6 characters; production needs at least 32"
    with pytest.raises(ConfigurationError, match=words):
        check_configuration(_production(tmp_path, api_jwt_secret="abcdef"))
    check_configuration(_production(tmp_path, api_jwt_secret="y" * 32))
    # Outside production a short secret is the developer's business.
    check_configuration(_production(tmp_path, env="local", api_jwt_secret="abcdef"))

from __future__ import annotations

from pathlib import Path

import pytest

from workers.settings import ConfigurationError, Settings


def test_reads_rrpd_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRPD_PAGERDUTY_API_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("RRPD_SYNC_INTERVAL_SECONDS", "42")
    s = Settings()
    assert s.api_base_url("us") == "http://127.0.0.1:9"
    assert s.sync_interval_seconds == 42


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
        s.check()
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
        s.check()


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
        s.check()


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

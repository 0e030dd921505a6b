"""One settings object for every process, read from ``RRPD_*`` environment variables and ``.env``.

Local mode works with zero set-up (SQLite under ``var/``, Redis on localhost, a generated
encryption key). Production mode refuses to start without real secrets.
"""

from __future__ import annotations

import logging
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """The configuration cannot work; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RRPD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.LOCAL
    var_dir: Path = Field(default=PROJECT_ROOT / "var", description="Where local state lives.")

    database_url: str = ""
    broker_url: str = "redis://127.0.0.1:6379/0"
    # Results are off by default for tasks; the backend still serves GET /v1/tasks/{id}.
    result_backend: str = "redis://127.0.0.1:6379/1"
    redbeat_url: str = ""
    # Prefix for every Redis key we own (locks, rate limits, redbeat), so runs can share a server.
    redis_key_prefix: str = "rrpd"

    # Comma-separated ``key_id=fernet_key`` pairs (or bare Fernet keys); the first one encrypts.
    encryption_keys: SecretStr = SecretStr("")
    api_jwt_secret: SecretStr = SecretStr("")
    api_jwt_ttl_seconds: int = 3600

    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_eu_api_url: str = "https://api.eu.pagerduty.com"
    pagerduty_identity_url: str = "https://identity.pagerduty.com"
    pagerduty_timeout_seconds: float = 10.0
    # PagerDuty allows 960 requests/minute per credential; stay a little under it.
    pagerduty_rate_limit_per_minute: int = 900

    public_url: str = "http://127.0.0.1:8000"
    # Where the browser lands after the OAuth callback (the app's integrations page).
    app_integrations_url: str = ""

    flower_basic_auth: SecretStr = SecretStr("admin:admin")

    sync_interval_seconds: int = 60
    sync_jitter_seconds: int = 20
    token_refresh_margin_seconds: int = 600
    oauth_state_ttl_seconds: int = 600

    api_max_body_bytes: int = 16_384
    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _blank_means_default(cls, value: str) -> str:
        return value.strip()

    # --- derived values -------------------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.env == Environment.PRODUCTION

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'rrpd.sqlite3'}"

    @property
    def effective_redbeat_url(self) -> str:
        return self.redbeat_url or self.broker_url

    @property
    def effective_app_integrations_url(self) -> str:
        return self.app_integrations_url or f"{self.public_url.rstrip('/')}/panel"

    @property
    def oauth_redirect_uri(self) -> str:
        return f"{self.public_url.rstrip('/')}/v1/pagerduty/oauth/callback"

    def api_base_url(self, region: str) -> str:
        url = self.pagerduty_eu_api_url if region == "eu" else self.pagerduty_api_url
        return url.rstrip("/")

    def encryption_key_material(self) -> str:
        """The configured keys, or in local mode a key generated once into ``var/``."""
        raw = self.encryption_keys.get_secret_value().strip()
        if raw:
            return raw
        if self.is_production:
            raise ConfigurationError(
                "RRPD_ENCRYPTION_KEYS is not set. Production needs at least one key: generate "
                "one with `rrpd keys generate` and set RRPD_ENCRYPTION_KEYS=k1=<key>."
            )
        return _local_secret(
            self.var_dir / "encryption.key", lambda: f"local={Fernet.generate_key().decode()}"
        )

    def jwt_secret(self) -> str:
        raw = self.api_jwt_secret.get_secret_value().strip()
        if raw:
            return raw
        if self.is_production:
            raise ConfigurationError(
                "RRPD_API_JWT_SECRET is not set. Production needs a long random secret shared "
                "with the Round Robin app that issues API tokens."
            )
        return _local_secret(self.var_dir / "jwt.secret", lambda: secrets.token_urlsafe(48))

    def check(self) -> None:
        """Fail start-up early and clearly; called by every ``rrpd`` server command."""
        self.encryption_key_material()
        self.jwt_secret()
        if self.is_production and self.effective_database_url.startswith("sqlite"):
            raise ConfigurationError(
                "RRPD_DATABASE_URL points at SQLite in production; use PostgreSQL."
            )


def _local_secret(path: Path, make: callable) -> str:  # type: ignore[valid-type]
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: two processes starting at once agree on one key instead of overwriting each other.
    try:
        with path.open("x") as fh:
            fh.write(value + "\n")
        path.chmod(0o600)
        log.warning("Generated a local secret at %s (local mode only; never in production).", path)
    except FileExistsError:
        return path.read_text().strip()
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests and the CLI change the environment and then ask for fresh settings."""
    get_settings.cache_clear()

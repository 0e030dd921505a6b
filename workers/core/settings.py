"""One settings object for every process, read from ``RRPD_*`` environment variables and ``.env``.

Local mode works with zero set-up (SQLite under ``var/``, Redis on localhost, a generated
encryption key). Production mode refuses to start without real secrets.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """The configuration cannot work; the message says what to set (one line per problem)."""


class SettingsError(ConfigurationError):
    """One or more ``RRPD_*`` variables hold a value that is not allowed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# HS256 secrets shorter than this are refused in production.
MIN_PRODUCTION_JWT_SECRET = 32

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# What each setting accepts, in the words printed when a value is refused (the variable is
# named, never the Python field: operators set variables).
ALLOWED: dict[str, str] = {
    "env": "one of local, test, production",
    "api_jwt_ttl_seconds": "a whole number of seconds, at least 1",
    "pagerduty_timeout_seconds": "a number of seconds greater than 0",
    "pagerduty_rate_limit_per_minute": "a whole number of requests, at least 1",
    "pagerduty_rate_limit_burst": "a whole number of requests, at least 1",
    "pagerduty_max_in_flight": "a whole number of requests, 1 to 32",
    "sync_interval_seconds": "a whole number of seconds, at least 1",
    "sync_jitter_seconds": "a whole number of seconds, 0 or more",
    "directory_interval_seconds": "a whole number of seconds, from 60 to 86400",
    "check_batch_size": "a whole number of connections, 1 to 500",
    "check_batch_threads": "a whole number of threads, 1 to 64",
    "user_directory_interval_seconds": "a whole number of seconds, from 900 to 604800",
    "upcoming_interval_seconds": "a whole number of seconds, from 900 to 86400",
    "sync_runs_retention_days": "a whole number of days, at least 1",
    "sync_runs_failed_retention_days": "a whole number of days, at least 1",
    "on_duty_history_days": "a whole number of days, at least 1",
    "redis_retry_max_seconds": "a number of seconds greater than 0",
    "token_refresh_margin_seconds": "a whole number of seconds, 0 or more",
    "oauth_state_ttl_seconds": "a whole number of seconds, at least 1",
    "api_max_body_bytes": "a whole number of bytes, at least 1",
    "api_max_header_bytes": "a whole number of bytes, at least 1024",
    "log_format": "one of auto, json, console",
    "outbox_poll_seconds": "a number of seconds greater than 0",
    "outbox_batch": "a whole number of rows, at least 1",
    "outbox_task_retention_hours": "a whole number of hours, at least 1",
    "events_retention_days": "a whole number of days, at least 1",
    "events_stream_retention_hours": "a whole number of hours, at least 1",
    "worker_heartbeat_seconds": "a whole number of seconds, at least 5",
    "sync_lease_seconds": "a whole number of seconds, 3 to 300",
    "log_level": f"one of {', '.join(LOG_LEVELS)}",
    # fleet capacity
    "db_pool_size": "a whole number of connections, at least 1",
    "db_max_overflow": "a whole number of connections, 0 or more",
    "public_url": "an http:// or https:// URL",
    "app_integrations_url": "empty, or an http:// or https:// URL",
    "app_login_url": "empty, or an http:// or https:// URL",
    "pagerduty_api_url": "an http:// or https:// URL",
    "pagerduty_eu_api_url": "an http:// or https:// URL",
    "pagerduty_identity_url": "an http:// or https:// URL",
    "pagerduty_id_token_issuers": "empty, or comma-separated http:// or https:// URLs",
}
# Their values are never printed, not even when refused.
SECRET_FIELDS = frozenset({"encryption_keys", "api_jwt_secret", "flower_basic_auth"})


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
    api_jwt_ttl_seconds: int = Field(3600, gt=0)

    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_eu_api_url: str = "https://api.eu.pagerduty.com"
    pagerduty_identity_url: str = "https://identity.pagerduty.com"
    # The id_token issuers a login accepts, comma-separated. Empty: both issuers PagerDuty has
    # documented (workers.pagerduty.oauth.accepted_issuers), since which one it sends is not
    # settled (pagerduty-facts.md, OAuth).
    pagerduty_id_token_issuers: str = ""
    pagerduty_timeout_seconds: float = Field(10.0, gt=0, allow_inf_nan=False)
    # PagerDuty allows 960 requests/minute per credential; stay a little under it.
    pagerduty_rate_limit_per_minute: int = Field(900, gt=0)
    # -- the client's concurrency (docs/pagerduty-client.md) --
    # Requests admitted at once on top of the pace; per_minute + burst stays <= 960, so no
    # 60 s window, however PagerDuty draws it, sees more than its limit.
    pagerduty_rate_limit_burst: int = Field(50, gt=0)
    # Independent reads in flight at once per credential (1: one after the other).
    pagerduty_max_in_flight: int = Field(8, ge=1, le=32)

    public_url: str = "http://127.0.0.1:8000"
    # Where the browser lands after the OAuth callback (the app's integrations page).
    app_integrations_url: str = ""
    # Where the panel sends a browser to sign in (the Round Robin app mints a token bound to
    # the browser's login nonce and sends it back to /panel?token=...). See docs/panel.md.
    app_login_url: str = ""

    flower_basic_auth: SecretStr = SecretStr("admin:admin")

    # Zero or negative intervals, TTLs and limits would mean "sync in a busy loop", "tokens
    # already expired" or "refuse every body": refused at load instead.
    sync_interval_seconds: int = Field(60, gt=0)
    sync_jitter_seconds: int = Field(20, ge=0)
    # The directory (users, schedule list, members) is read in full this often and on demand;
    # syncs in between only check who is on call (docs/sync-and-disconnect.md). Under a minute
    # would be the old every-sync cost; over a day, new people would wait too long.
    directory_interval_seconds: int = Field(900, ge=60, le=86_400)
    # Beat's fan-out sends due connections in batches of this many (one message each); a batch
    # has this many PagerDuty reads in flight at once, each within its own rate limit.
    check_batch_size: int = Field(50, ge=1, le=500)
    check_batch_threads: int = Field(8, ge=1, le=64)
    # The user directory (GET /users pages: 100 on a 10,000-user account) is listed this often
    # and on demand; a person met in between is read alone (GET /users/{id}). What it refreshes
    # in between is names, emails and deletions of people already linked, which rarely change.
    user_directory_interval_seconds: int = Field(86_400, ge=900, le=604_800)
    # Each bound schedule's next 7 days ("your shift moved") are read with the first directory
    # read once this has passed, and on demand: an hour bounds how late a change to a future
    # shift is told, for ~1 % more requests on a large account (docs/sync-and-disconnect.md).
    upcoming_interval_seconds: int = Field(3_600, ge=900, le=86_400)
    # sync_runs: succeeded and skipped runs are kept this many days, failed ones longer (they
    # are what an admin or operator looks back for), then deleted by the sync-runs-retention loop.
    sync_runs_retention_days: int = Field(7, gt=0)
    sync_runs_failed_retention_days: int = Field(30, gt=0)
    # The on-call report's history (on_duty_intervals): ended intervals older than this go.
    on_duty_history_days: int = Field(400, gt=0)
    token_refresh_margin_seconds: int = Field(600, ge=0)
    # Longest pause between attempts to reach Redis again after losing it: beat starting its
    # scheduler again, a worker reconnecting (workers.tasking.supervision); pauses grow to it.
    redis_retry_max_seconds: float = Field(5.0, gt=0, allow_inf_nan=False)
    oauth_state_ttl_seconds: int = Field(600, gt=0)

    api_max_body_bytes: int = Field(16_384, gt=0)
    # Request line plus headers; a JWT and the panel's cookies need well under 4 KiB.
    api_max_header_bytes: int = Field(16_384, ge=1024)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # Which background loops a worker runs (workers.tasking.loops): all, none, or names.
    worker_loops: str = "all"

    # Fleet capacity: each process's PostgreSQL pool. A prefork child runs one task at a time
    # (5 is plenty); a threads worker needs one connection per thread, so `rrpd worker --pool
    # threads -c N` sets it to N + 4 unless given (docs/operations.md, "Sizing").
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(5, ge=0)

    # The outbox (workers/outbox): how often each worker node's relay looks for rows the
    # after-commit fast path did not publish, how many rows one round publishes, and how long
    # published rows are kept (tasks: to re-publish after a broker lost its data; events: for
    # `rrpd events replay`).
    outbox_poll_seconds: float = Field(1.0, gt=0, allow_inf_nan=False)
    outbox_batch: int = Field(500, gt=0)
    outbox_task_retention_hours: int = Field(24, gt=0)
    events_retention_days: int = Field(7, gt=0)
    # The Redis stream other services read events from (default: <RRPD_REDIS_KEY_PREFIX>:events)
    # and how long it keeps them (older entries are trimmed as new ones are added).
    events_stream: str = ""
    events_stream_retention_hours: int = Field(72, gt=0)
    # A worker node whose heartbeat is older than this is dead: the messages it held go back
    # to their queue (workers.tasking.redelivery) instead of waiting for the visibility timeout.
    worker_heartbeat_seconds: int = Field(30, ge=5)
    # A sync's Redis lease (workers.sync.coalescing) lives this long unless renewed, every third
    # of it, by its live holder: a SIGKILLed sync worker's connection is free again within it.
    sync_lease_seconds: int = Field(15, ge=3, le=300)

    @field_validator("database_url")
    @classmethod
    def _blank_means_default(cls, value: str) -> str:
        return value.strip()

    @field_validator("env", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise ValueError(ALLOWED["log_level"])

    @field_validator(
        "public_url", "pagerduty_api_url", "pagerduty_eu_api_url", "pagerduty_identity_url"
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("app_integrations_url", "app_login_url")
    @classmethod
    def _optional_http_url(cls, value: str) -> str:
        value = value.strip()
        return _check_http_url(value) if value else value

    @field_validator("pagerduty_id_token_issuers")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        urls = [_check_http_url(part) for part in value.split(",") if part.strip()]
        return ",".join(urls)

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
    def effective_events_stream(self) -> str:
        return self.events_stream.strip() or f"{self.redis_key_prefix}:events"

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

    @property
    def encryption_keys_source(self) -> str:
        """Where the keys come from, for error messages."""
        if self.encryption_keys.get_secret_value().strip() or self.is_production:
            return "RRPD_ENCRYPTION_KEYS"
        return f"the local key file {self.var_dir / 'encryption.key'}"

    def jwt_secret(self) -> str:
        raw = self.api_jwt_secret.get_secret_value().strip()
        if raw and self.is_production and len(raw) < MIN_PRODUCTION_JWT_SECRET:
            # HS256 with a short secret can be brute-forced offline from any one token.
            raise ConfigurationError(
                f"RRPD_API_JWT_SECRET is {len(raw)} characters; production needs at least "
                f"{MIN_PRODUCTION_JWT_SECRET} random characters (e.g. `python3 -c 'import "
                "secrets; print(secrets.token_urlsafe(48))'`), shared with the Round Robin app."
            )
        if raw:
            return raw
        if self.is_production:
            raise ConfigurationError(
                "RRPD_API_JWT_SECRET is not set. Production needs a long random secret shared "
                "with the Round Robin app that issues API tokens."
            )
        return _local_secret(self.var_dir / "jwt.secret", lambda: secrets.token_urlsafe(48))


def _check_http_url(value: str) -> str:
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest:
        raise ValueError("an http:// or https:// URL")
    return value


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per refused setting: the variable, the value given and what is allowed."""
    lines: list[str] = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        variable = f"RRPD_{field.upper()}" if field else "RRPD_*"
        given = "(hidden)" if field in SECRET_FIELDS else repr(err.get("input"))
        allowed = ALLOWED.get(field) or str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{variable}={given} is not allowed; expected {allowed}.")
    return lines


def load_settings() -> Settings:
    """``Settings()``, with refusals turned into one line per variable (no traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def _local_secret(path: Path, make: Callable[[], str]) -> str:
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
    return load_settings()


def reset_settings_cache() -> None:
    """Tests and the CLI change the environment and then ask for fresh settings."""
    get_settings.cache_clear()

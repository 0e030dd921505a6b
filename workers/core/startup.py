"""The start-up check every server process runs before doing anything."""

from __future__ import annotations

from workers.core.crypto import Keyring
from workers.core.settings import ConfigurationError, Settings


def check_configuration(settings: Settings) -> None:
    """Fail start-up early and clearly; called by every ``rrpd`` server command.

    Parses every encryption key (not just the first use of one) and checks the JWT secret.
    Also behind ``/readyz``, so a process started some other way is not sent traffic.
    """
    Keyring.parse(settings.encryption_key_material(), settings.encryption_keys_source)
    settings.jwt_secret()
    if settings.is_production and settings.effective_database_url.startswith("sqlite"):
        raise ConfigurationError(
            "RRPD_DATABASE_URL points at SQLite in production; use PostgreSQL."
        )

"""Test set-up: the environment first (tests/support/env.py), then the shared fixtures as plugins.

The fixtures live in tests/support/: services.py (database_url, db, session, redis_client) and
stack.py (the simulator, live workers, the API process).
"""

from __future__ import annotations

# First: the environment must be set before any project module reads its settings.
from tests.support.env import API_PORT, PG_ADMIN_URL, TEST_DB_NAME, TEST_ENV  # noqa: F401
from workers.core.settings import reset_settings_cache

reset_settings_cache()

pytest_plugins = ["tests.support.services", "tests.support.stack"]


def pytest_report_header() -> str:
    from tests.support.env import TEST_CLOCK

    return f"clock: now pinned to {TEST_CLOCK} at the start of the run (RRPD_TEST_CLOCK)"

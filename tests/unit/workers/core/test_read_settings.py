"""The settings of the two reads and of sync_runs retention: defaults, and one-line refusals."""

from __future__ import annotations

import pytest

from workers.core.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert (
        settings.directory_interval_seconds,
        settings.user_directory_interval_seconds,
        settings.upcoming_interval_seconds,
        settings.sync_runs_retention_days,
        settings.sync_runs_failed_retention_days,
    ) == (900, 86_400, 3_600, 7, 30)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RRPD_DIRECTORY_INTERVAL_SECONDS", "59", "a whole number of seconds, from 60 to 86400"),
        ("RRPD_DIRECTORY_INTERVAL_SECONDS", "86401", "a whole number of seconds, from 60 to 86400"),
        (
            "RRPD_USER_DIRECTORY_INTERVAL_SECONDS",
            "899",
            "a whole number of seconds, from 900 to 604800",
        ),
        ("RRPD_UPCOMING_INTERVAL_SECONDS", "899", "a whole number of seconds, from 900 to 86400"),
        ("RRPD_UPCOMING_INTERVAL_SECONDS", "86401", "a whole number of seconds, from 900 to 86400"),
        ("RRPD_SYNC_RUNS_RETENTION_DAYS", "0", "a whole number of days, at least 1"),
        ("RRPD_SYNC_RUNS_FAILED_RETENTION_DAYS", "-1", "a whole number of days, at least 1"),
    ],
)
def test_out_of_bounds_values_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert refused.value.problems == [f"{variable}={value!r} is not allowed; expected {expected}."]

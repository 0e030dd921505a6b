"""The one clock: every "now" of ours (``utcnow``) and of the PagerDuty simulator.

In production it is the system clock. ``RRPD_CLOCK_OFFSET_SECONDS`` shifts it by a fixed
amount, for every process that inherits the variable: the test suite pins "now" to a chosen
instant (``RRPD_TEST_CLOCK``, tests/support/env.py) and ``rrpd run --at`` starts the local stack
at one, so what depends on the time of day (a shift from 12:00 to 18:00 every other day) is
tested at the times it matters, not at whatever hour CI happens to run.

The clock still runs: durations measured by Redis TTLs, Celery countdowns and ``time.monotonic``
agree with it. Only security clocks that other systems share stay on the system clock: the
Round Robin JWTs the API verifies (their issuers use the real time).

It lives beside the models (the lowest layer) because a column default reads it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

OFFSET_ENV = "RRPD_CLOCK_OFFSET_SECONDS"

_offset: timedelta | None = None


def _read_offset() -> timedelta:
    raw = os.environ.get(OFFSET_ENV, "").strip()
    if not raw:
        return timedelta(0)
    try:
        return timedelta(seconds=float(raw))
    except ValueError:
        raise ValueError(f"{OFFSET_ENV} must be a number of seconds, not {raw!r}") from None


def offset() -> timedelta:
    global _offset
    if _offset is None:
        _offset = _read_offset()
    return _offset


def utcnow() -> datetime:
    """Now, in UTC (timezone-aware), by the one clock."""
    return datetime.now(UTC) + offset()


def offset_to(instant: datetime, *, real_now: datetime | None = None) -> float:
    """The ``RRPD_CLOCK_OFFSET_SECONDS`` that makes "now" ``instant`` at ``real_now``."""
    if instant.tzinfo is None:
        raise ValueError("the instant must be timezone-aware")
    return (instant - (real_now or datetime.now(UTC))).total_seconds()


def pin(instant: datetime) -> float:
    """Make "now" ``instant`` from this moment on, for this process and the ones it starts
    (the variable is exported); returns the offset set."""
    global _offset
    seconds = offset_to(instant)
    os.environ[OFFSET_ENV] = repr(seconds)
    _offset = timedelta(seconds=seconds)
    return seconds


def reset() -> None:
    """Read the variable again (after a test changed it)."""
    global _offset
    _offset = None

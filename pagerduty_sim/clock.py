"""PagerDuty's clock in the simulator: the system clock, shifted like ours.

Real PagerDuty and our workers both keep NTP time, so they agree on "now". When a test or
``rrpd run --at`` pins our clock (``RRPD_CLOCK_OFFSET_SECONDS``, models/clock.py), the simulator
reads the same variable, so both still agree. The control API's ``/clock`` then moves the
simulator alone (PagerDuty's time travelling ahead of ours, on purpose), on top of this.
Read on its own here: the simulator imports nothing of the product it stands in front of.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

OFFSET_ENV = "RRPD_CLOCK_OFFSET_SECONDS"


def system_now() -> datetime:
    raw = os.environ.get(OFFSET_ENV, "").strip()
    return datetime.now(UTC) + timedelta(seconds=float(raw) if raw else 0.0)

"""The sync family's retry policy: capped exponential backoff with full jitter."""

from __future__ import annotations

import random

from workers.tasking.contract import RETRY_POLICIES, Family

SYNC_RETRY = RETRY_POLICIES[Family.SYNC]
assert SYNC_RETRY is not None


def test_transient_backoff_is_capped_exponential_with_full_jitter() -> None:
    rng = random.Random(7)
    for n in range(8):
        ceiling = min(300.0, 5.0 * 2**n)
        waits = [SYNC_RETRY.countdown(n, rng=rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.8 * ceiling
        assert min(waits) < 0.2 * ceiling

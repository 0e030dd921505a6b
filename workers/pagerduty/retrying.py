"""Short, bounded retries for the one-request OAuth calls: the token endpoint and the JWKS.

The REST transport has its own retry loop (``transport.Transport``). These calls happen while a
login or a refresh waits on them, so a blip (a connect error, a timeout, a 5xx, a 429) is tried
again a few times within seconds instead of failing the login: an authorization code lives 30
seconds, and a login whose tokens PagerDuty already issued must not be lost to one failed JWKS
fetch. Anything else (PagerDuty refusing the grant or the client) is final and raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from workers.pagerduty.errors import RateLimited, Transient

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Retries:
    """Up to ``attempts`` tries, waiting ``first_delay`` then doubling; no try starts once
    ``budget`` seconds have passed since the first (a wait that would cross it is not taken).
    A 429's ``ratelimit-reset`` is waited for when it fits in the budget."""

    attempts: int = 3
    first_delay: float = 0.5
    budget: float = 10.0

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        started = clock()
        attempt = 0
        while True:
            try:
                return fn()
            except (Transient, RateLimited) as exc:
                delay = self.first_delay * (2**attempt)
                if isinstance(exc, RateLimited) and exc.reset_after is not None:
                    delay = max(delay, exc.reset_after)
                attempt += 1
                if attempt >= self.attempts or clock() - started + delay >= self.budget:
                    raise
                # The error's words name no secret (workers.pagerduty.errors).
                log.info("%s: %s; try %d in %.1fs", what, exc, attempt + 1, delay)
                sleep(delay)


NO_RETRIES = Retries(attempts=1)

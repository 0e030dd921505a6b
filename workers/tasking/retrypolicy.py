"""A retry policy: capped exponential backoff with full jitter (the contract's families use it)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Never wait longer than this before a retry: the broker's visibility timeout is sized for it.
MAX_RETRY_COUNTDOWN = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; PagerDuty's ``ratelimit-reset`` wins.

    The n-th retry (n = 0, 1, ...) waits ``uniform(0, min(cap, base * 2**n))`` seconds, or, for
    a 429 that said when its window resets, that many seconds plus ``uniform(0, reset_jitter)``
    (so the workers a reset released do not return in step). Never more than
    ``MAX_RETRY_COUNTDOWN``: the broker's visibility timeout is sized for it.
    """

    base: float
    cap: float
    # What is retried, in the words of docs/tasks.md.
    retried: str
    # PagerDuty's 429 says when its window resets: wait that long (plus this much jitter).
    honours_reset: bool = True
    reset_jitter: float = 0.0

    def countdown(
        self,
        retries: int,
        *,
        reset_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        draw = (rng or random).uniform
        if reset_after is not None:
            wait = max(0.0, reset_after) + draw(0, self.reset_jitter)
        else:
            wait = draw(0, min(self.cap, self.base * 2 ** max(0, retries)))
        return round(min(wait, MAX_RETRY_COUNTDOWN), 3)

    def describe(self) -> str:
        reset = "a 429 waits for PagerDuty's reset" + (
            f" (+ up to {self.reset_jitter:g} s)" if self.reset_jitter else ""
        )
        backoff = f"full jitter up to {self.base:g} s·2ⁿ, capped at {self.cap:g} s"
        return f"{self.retried}; {backoff}" + (f"; {reset}" if self.honours_reset else "")

"""The OAuth calls' short retries (workers/pagerduty/retrying.py), on a fake clock."""

from __future__ import annotations

import pytest

from workers.pagerduty.errors import InvalidGrant, RateLimited, Transient
from workers.pagerduty.retrying import Retries


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _failing(errors: list[Exception]):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_transient_failures_are_tried_again_with_doubling_waits() -> None:
    t = FakeTime()
    call, calls = _failing([Transient("503"), Transient("timeout")])
    assert Retries().call(call, what="x", sleep=t.sleep, clock=t.clock) == "ok"
    assert (len(calls), t.slept) == (3, [0.5, 1.0])


def test_the_last_failure_is_raised_after_the_attempts() -> None:
    t = FakeTime()
    call, calls = _failing([Transient("1"), Transient("2"), Transient("3"), Transient("4")])
    with pytest.raises(Transient, match="3"):
        Retries(attempts=3).call(call, what="x", sleep=t.sleep, clock=t.clock)
    assert len(calls) == 3


def test_a_refusal_is_final_at_once() -> None:
    t = FakeTime()
    call, calls = _failing([InvalidGrant("code already used")])
    with pytest.raises(InvalidGrant):
        Retries().call(call, what="x", sleep=t.sleep, clock=t.clock)
    assert (len(calls), t.slept) == (1, [])


def test_no_try_starts_past_the_budget() -> None:
    t = FakeTime()

    def slow_failure() -> str:
        t.now += 9.0  # a timeout
        raise Transient("timeout")

    with pytest.raises(Transient):
        Retries(attempts=5, budget=10.0).call(slow_failure, what="x", sleep=t.sleep, clock=t.clock)
    assert t.slept == [0.5]  # 9 s + 0.5 < 10: one more; 18.5 s + 1 would cross it


def test_a_429_waits_for_its_reset_when_it_fits() -> None:
    t = FakeTime()
    call, _ = _failing([RateLimited("429", reset_after=2.0)])
    assert Retries().call(call, what="x", sleep=t.sleep, clock=t.clock) == "ok"
    assert t.slept == [2.0]
    call, calls = _failing([RateLimited("429", reset_after=60.0)])
    with pytest.raises(RateLimited):
        Retries().call(call, what="x", sleep=t.sleep, clock=t.clock)
    assert len(calls) == 1  # the task's own retry waits that long, not the login

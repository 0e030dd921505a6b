"""Background loops: a round's return value sets the next wake-up; a failing round is retried."""

from __future__ import annotations

import random
import threading

from workers.tasking import loops


class _RecordedStop(threading.Event):
    """The loop's stop event, recording each pause the loop asks for instead of sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.pauses.append(timeout)
        return self.is_set()


def test_a_loop_sleeps_what_its_round_asks_and_survives_a_failing_round() -> None:
    stop = _RecordedStop()
    asks: list[float | Exception] = [0.25, RuntimeError("the database went away"), 7.0, -1.0]

    def step() -> float:
        ask = asks.pop(0)
        if not asks:
            stop.set()
        if isinstance(ask, Exception):
            raise ask
        return ask

    loop = loops.Loop("test", step, max_sleep=5.0, error_backoff_cap=30.0)
    loops.run_forever(loop, stop, random.Random(1))
    # The failing round's pause: full jitter below 0.5 * 2**1 s (one failure in a row).
    backoff = random.Random(1).uniform(0, 1.0)
    # What the round asked, clamped to [0, max_sleep]; the failure was logged and the loop went on.
    assert stop.pauses == [0.25, backoff, 5.0, 0.0]


def test_workers_choose_which_loops_run() -> None:
    loops.register_loop("alpha", lambda: 1.0)
    loops.register_loop("beta", lambda: 1.0)
    try:
        names = {loop.name for loop in loops.selected("all")}
        assert {"alpha", "beta"} <= names
        assert loops.selected("none") == []
        assert [loop.name for loop in loops.selected("beta")] == ["beta"]
    finally:
        loops.unregister_loop("alpha")
        loops.unregister_loop("beta")


def test_the_worker_app_runs_the_loops_bootstep() -> None:
    from workers.tasking.app import app

    assert loops.LoopsStep in app.steps["worker"]

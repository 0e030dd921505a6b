"""Background loops: a round's return value sets the next wake-up; a failing round is retried."""

from __future__ import annotations

import random
import threading

from workers.tasking import loops


def test_a_loop_sleeps_what_its_round_asks_and_survives_a_failing_round() -> None:
    stop = threading.Event()
    rounds: list[str] = []

    def step() -> float:
        rounds.append("round")
        if len(rounds) == 2:
            raise RuntimeError("the database went away")
        if len(rounds) >= 4:
            stop.set()
        return 0.01

    loop = loops.Loop("test", step, max_sleep=0.05, error_backoff_cap=0.05)
    thread = threading.Thread(target=loops.run_forever, args=(loop, stop, random.Random(1)))
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(rounds) == 4  # the failure was logged and the loop went on


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

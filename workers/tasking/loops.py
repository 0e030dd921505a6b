"""Background loops in every worker node: work that must happen at an instant, not per message.

Some work has no message to carry it: a handoff falls due at 14:00:00, a committed outbox row
waits for its publish. A *loop* is a function that does one round of such work and returns how
many seconds to sleep before the next round (the earliest instant it knows of, bounded by
``max_sleep``). ``register_loop`` declares one; ``LoopsStep``, a Celery worker bootstep, runs one
daemon thread per declared loop in each worker's main process, from worker start to shutdown.

Correctness lives in the database, never in the loop: each round claims its rows with row locks
(``FOR UPDATE SKIP LOCKED``) or conditional updates, so running the loop in every worker node
scales it out, needs no leader, and a worker killed mid-round loses nothing (its transaction
rolls back; another node's next round does the work). Redis plays no part.

A round that raises is logged and retried after a capped backoff; the thread never dies of it.
``RRPD_WORKER_LOOPS`` (``all`` by default, ``none`` to run none, or a comma-separated list of
names) chooses which loops a worker runs.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

Step = Callable[[], float]


@dataclass
class Loop:
    name: str
    step: Step
    max_sleep: float = 1.0
    error_backoff_cap: float = 30.0
    thread: threading.Thread | None = field(default=None, repr=False)


_LOOPS: dict[str, Loop] = {}


def register_loop(
    name: str, step: Step, *, max_sleep: float = 1.0, error_backoff_cap: float = 30.0
) -> None:
    """Declare a loop. ``step()`` runs one round and returns the seconds until the next one
    (clamped to ``[0, max_sleep]``). Registering a name again replaces it."""
    _LOOPS[name] = Loop(name, step, max_sleep, error_backoff_cap)


def unregister_loop(name: str) -> None:
    _LOOPS.pop(name, None)


def registered() -> dict[str, Loop]:
    return dict(_LOOPS)


def selected(setting: str) -> list[Loop]:
    """The loops ``RRPD_WORKER_LOOPS`` asks for: ``all``, ``none`` or a list of names."""
    value = setting.strip().lower()
    if value in ("", "all"):
        return list(_LOOPS.values())
    if value == "none":
        return []
    names = {n.strip() for n in value.split(",") if n.strip()}
    return [loop for name, loop in _LOOPS.items() if name in names]


def run_forever(loop: Loop, stop: threading.Event, rng: random.Random | None = None) -> None:
    """Run ``loop`` until ``stop`` is set (the thread body; tests may call it directly)."""
    rng = rng or random.Random()
    failures = 0
    while not stop.is_set():
        try:
            delay = loop.step()
            failures = 0
        except Exception:
            failures += 1
            delay = rng.uniform(0, min(loop.error_backoff_cap, 0.5 * 2**failures))
            log.exception("background loop %s failed (%d in a row)", loop.name, failures)
        stop.wait(max(0.0, min(float(delay), loop.max_sleep)))


class LoopsStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts the selected loops when a worker starts and stops them when it stops."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, parent: Any) -> None:
        from workers.core.settings import get_settings

        # The feature packages register their loops when imported; the worker imports the task
        # modules, which import the features, before this step starts.
        for loop in selected(get_settings().worker_loops):
            thread = threading.Thread(
                target=run_forever, args=(loop, self._stop), name=f"rrpd-loop-{loop.name}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
            log.info("background loop %s started", loop.name)

    def stop(self, parent: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

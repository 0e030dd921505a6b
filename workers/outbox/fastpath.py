"""The fast path: a relay thread in every process that writes to the outbox, woken after commit.

``workers.outbox.writer`` registers ``kick`` to run after each commit that wrote outbox rows;
the thread then runs relay rounds (``workers.outbox.relay.relay_lane``) for those lanes, so a
task reaches Redis milliseconds after its commit while the writer (an API request, a task)
never waits on Redis. Whatever it cannot publish (Redis down, the process died) the
``outbox-relay`` loop of every worker node publishes.
"""

from __future__ import annotations

import logging
import threading
import time

from workers.core.process import after_fork
from workers.outbox.lanes import LANES
from workers.outbox.relay import relay_lane

log = logging.getLogger(__name__)


class _Kicker:
    """A daemon thread that runs rounds for the lanes a commit wrote. ``kick`` never blocks and
    never raises: the writer's answer (an API response, a task) never waits on Redis."""

    # A relay that holds a lane may have read its batch just before our commit: try again a
    # few times before leaving the row to the loop.
    BUSY_RETRIES = 20
    BUSY_WAIT = 0.05

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._running = False
        self._thread: threading.Thread | None = None

    def kick(self, lanes: set[str]) -> None:
        with self._cond:
            self._pending |= lanes
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="rrpd-outbox-fast-path", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def drain(self, timeout: float = 3.0) -> bool:
        """Wait until the kicked lanes are relayed (a short-lived process, before it exits)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._running, timeout=timeout
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
                lanes, self._pending = self._pending, set()
                self._running = True
            try:
                for lane in [lane for lane in LANES if lane in lanes]:
                    self._relay(lane)
            except Exception:
                # The loop of every worker node publishes what this could not.
                log.warning("outbox fast path failed; the relay loop will publish", exc_info=True)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _relay(self, lane: str) -> None:
        for _ in range(self.BUSY_RETRIES):
            result = relay_lane(lane)
            if result.error or not (result.busy or result.full):
                return
            if result.busy:
                time.sleep(self.BUSY_WAIT)


_kicker = _Kicker()


def kick(lanes: set[str]) -> None:
    """Wake this process's fast path for ``lanes`` (after a commit that wrote to them)."""
    try:
        _kicker.kick(set(lanes))
    except Exception:  # never let a wake-up fail the commit that asked for it
        log.warning("could not wake the outbox fast path", exc_info=True)


def drain(timeout: float = 3.0) -> bool:
    return _kicker.drain(timeout)


@after_fork
def _forget_kicker() -> None:
    global _kicker
    _kicker = _Kicker()

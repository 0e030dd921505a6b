"""The outbox's lanes: relayed separately, each in id order.

A task's lane is its queue, so a burst of sync tasks never holds up an interactive one (the
relay serves ``interactive`` first); every event is in the one ``events`` lane, so each key's
events keep their order.
"""

from __future__ import annotations

from workers.tasking.contract import QUEUES

EVENTS_LANE = "events"
LANES: tuple[str, ...] = (*QUEUES, EVENTS_LANE)

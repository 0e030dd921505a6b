"""A trivial task operators (and the smoke test) use to prove a worker consumes its queue."""

from __future__ import annotations

from workers.tasking.app import RRPDTask, contract_task
from workers.tasking.contract import PING


@contract_task(PING)
def ping(self: RRPDTask, *, payload: str = "pong") -> dict[str, str]:
    return {"reply": payload}

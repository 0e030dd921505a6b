"""Sync tasks: thin wrappers over ``workers.sync`` (contract: ``workers.tasking.contract``)."""

from __future__ import annotations

from typing import Any

from workers.sync import batch, fanout, run
from workers.sync.kinds import RetryReason
from workers.tasking.app import BeatTask, SyncTask, contract_task
from workers.tasking.contract import CHECK_CONNECTIONS, SCHEDULE_SYNCS, SYNC_CONNECTION


@contract_task(SYNC_CONNECTION)
def sync_connection(
    self: SyncTask, *, connection_id: str, kind: str = "scheduled"
) -> dict[str, Any]:
    # ``kind`` is one of contract.SYNC_KINDS: the task base refuses anything else.
    result = run.sync_connection(connection_id, kind=kind, task_id=self.request.id)
    if result.retry and self.retries_left:
        # 429: after PagerDuty's reset; transient: the family's capped backoff.
        self.retry_later(
            reset_after=result.retry_after if result.retry == RetryReason.RATE_LIMITED else None
        )
    return result.as_dict()


@contract_task(CHECK_CONNECTIONS)
def check_connections(self: BeatTask, *, connection_ids: list[str]) -> dict[str, Any]:
    # Each connection's retries are its own ``sync_connection`` (published by the batch).
    return batch.check_connections(connection_ids, task_id=self.request.id).as_dict()


@contract_task(SCHEDULE_SYNCS)
def schedule_syncs(self: BeatTask, *, shard: int = 0, shards: int = 0) -> dict[str, int]:
    # Beat sends no arguments (a round); a round too big for one task sends shards.
    return fanout.schedule_syncs(shard=shard, shards=shards)

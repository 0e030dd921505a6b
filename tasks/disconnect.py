"""Disconnect tasks: thin wrappers over ``workers.disconnect`` (contract:
``workers.tasking.contract``): ``pagerduty.disconnect`` and the deprecated no-op
``pagerduty.revoke_tokens``."""

from __future__ import annotations

from typing import Any

from workers.disconnect import revoke, transaction
from workers.tasking.app import RRPDTask, contract_task
from workers.tasking.contract import DISCONNECT, REVOKE_TOKENS


@contract_task(DISCONNECT)
def disconnect(
    self: RRPDTask, *, connection_id: str, actor_member_id: str | None = None
) -> dict[str, Any]:
    # A database outage or conflict rolls the one transaction back whole: the task base retries
    # it, as for every task (one backoff, one count; docs/tasks.md).
    return transaction.disconnect_connection(
        connection_id, actor_member_id=actor_member_id
    ).as_dict()


@contract_task(REVOKE_TOKENS)
def revoke_tokens(self: RRPDTask, *, connection_id: str) -> dict[str, Any]:
    """Deprecated: kept so senders of the old contract get an answer, not an unknown task.

    PagerDuty has no revocation endpoint; a disconnect deletes our copies of the tokens at once.
    """
    return revoke.revoke_tokens(connection_id).as_dict()

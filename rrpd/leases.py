"""``rrpd sync-locks``: which connections have a sync running, on which worker, until when.

The sync lease (``workers.sync.coalescing``) is a Redis key an operator should not have to dig
for: a lease renewed by a live holder moves its "until" forward every few seconds; a dead
holder's lapses within ``RRPD_SYNC_LEASE_SECONDS`` (15 s by default).
"""

from __future__ import annotations

import json

import click

from models.clock import utcnow
from rrpd.common import checked_settings, when
from workers.core import locks


@click.command("sync-locks")
@click.option("--json", "as_json", is_flag=True, help="Print the leases as JSON.")
def sync_locks(as_json: bool) -> None:
    """List the syncs running now: connection, holder (host:pid), since, lease until."""
    checked_settings()
    held = locks.leases("sync:")
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "connection_id": info.name.removeprefix("sync:"),
                        "holder": info.holder,
                        "since": info.since.isoformat(),
                        "lease_until": info.until.isoformat(),
                    }
                    for info in held
                ],
                indent=2,
            )
        )
        return
    if not held:
        click.echo("No sync is running.")
        return
    now = utcnow()
    for info in held:
        left = (info.until - now).total_seconds()
        click.echo(
            f"{info.name.removeprefix('sync:')}  sync running since {when(info.since)} on "
            f"{info.holder}, lease until {when(info.until)} ({left:.0f} s left)"
        )


COMMANDS = (sync_locks,)

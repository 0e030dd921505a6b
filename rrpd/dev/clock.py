"""``--at``: start the local stack with "now" pinned to an instant (models/clock.py).

What the demo scenario shows depends on the time of day (the afternoon cover of Follow-the-Sun,
the daily Secondary handoff at midnight): ``--at`` makes a run reproducible, or shows an hour
that is not now. Every part inherits the shift, the simulator included; the clock still runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _instant(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 instant (e.g. 2026-12-08T13:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def at_option(fn: F) -> F:
    return click.option(
        "--at",
        "at",
        callback=_instant,
        metavar="INSTANT",
        help="Start with the clock of every part (and the simulator) at this ISO 8601 instant "
        "(UTC if no zone); it runs on from there.",
    )(fn)


def pin_clock(at: datetime | None) -> None:
    """Pin this process's clock, and the clock of every process it starts, to ``at``."""
    if at is not None:
        from models import clock

        clock.pin(at)
        click.echo(f"clock: now is {at.isoformat()} (--at)")

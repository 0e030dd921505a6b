"""What operators read and re-send: ``rrpd audit``, ``rrpd outbox``, ``rrpd events``.

They use the configured database (and, to publish, Redis) directly; they print ids, actions and
plain-words details, never a secret.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from models import OutboxKind
from models.clock import utcnow
from rrpd.common import checked_settings, find_workspace, plain, when, workspace_argument


def _moment(value: str | None, what: str) -> datetime | None:
    """An ISO time (UTC if no zone is given) or a relative one: 30m, 2h, 7d."""
    if value is None:
        return None
    text = value.strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[:-1].isdigit() and text[-1:] in units:
        return utcnow() - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time (ISO 8601, e.g. 2026-12-03T14:00:00Z, or 30m, 2h, 7d)",
            param_hint=what,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- rrpd audit ---------------------------------------------------------------------------------


@click.command("audit")
@workspace_argument
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--before", default=None, help="Only events older than this (ISO time or 2h).")
@click.option("--action", default=None, help="Only actions starting with this, e.g. pagerduty.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(
    workspace: str, limit: int, before: str | None, action: str | None, as_json: bool
) -> None:
    """A workspace's audit trail, newest first: who did what, and what the system did."""
    checked_settings()
    from workers.core.audit import audit_trail
    from workers.core.db import transaction

    with transaction() as session:
        ws = find_workspace(session, workspace)
        events = audit_trail(
            session, ws.id, limit=limit, before=_moment(before, "--before"), action=action
        )
    if as_json:
        for event in events:
            click.echo(json.dumps(plain(event), sort_keys=True))
        return
    if not events:
        click.echo("no audit events")
        return
    for event in events:
        who = event["actor"]
        if event["actor_email"]:
            who = f"{event['actor_name']} <{event['actor_email']}>"
        details = ", ".join(f"{k}={plain(v)}" for k, v in sorted(event["details"].items()))
        click.echo(f"{when(event['at'])}  {event['action']:<34} {who}  {details}".rstrip())


# --- rrpd outbox / rrpd events ------------------------------------------------------------------


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: tasks and events waiting to be published, and re-publishing."""


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def outbox_status(as_json: bool) -> None:
    """Rows not yet published, per lane, with the oldest one's age and the last error."""
    checked_settings()
    from workers.outbox.relay import backlog

    lanes = backlog()
    if as_json:
        click.echo(json.dumps(lanes, sort_keys=True))
        return
    for lane, info in lanes.items():
        age = info.get("oldest_seconds")
        line = f"{lane:<12} {info.get('unpublished', 0):>7} unpublished"
        if age is not None:
            line += f", oldest {age:.0f} s"
        if info.get("last_error"):
            line += f", last error: {info['last_error']}"
        click.echo(line)


def _workspace_id(workspace: str | None) -> uuid.UUID | None:
    if workspace is None:
        return None
    try:
        # An id as it is: a deleted workspace's rows can still be replayed.
        return uuid.UUID(workspace.strip())
    except ValueError:
        pass
    from workers.core.db import transaction

    with transaction() as session:
        return find_workspace(session, workspace).id


def _replay(
    since: str, until: str | None, workspace: str | None, kinds: tuple[OutboxKind, ...]
) -> None:
    from workers.outbox.replay import replay

    start = _moment(since, "--since")
    assert start is not None
    done = replay(
        start,
        _moment(until, "--until"),
        kinds=kinds,
        workspace_id=_workspace_id(workspace),
    )
    click.echo(f"published again: {done.events} event(s), {done.tasks} task(s)")


_since = click.option(
    "--since", required=True, help="Rows written since this time (ISO 8601, or 30m, 2h, 7d)."
)
_until = click.option("--until", default=None, help="... and before this time.")
_workspace_option = click.option(
    "--workspace",
    default=None,
    help="Only this workspace's rows: its id, or its name (exact, else ignoring case; a name "
    "several workspaces share is refused with their ids).",
)


@outbox_group.command("replay")
@_since
@_until
@_workspace_option
@click.option(
    "--what",
    type=click.Choice(["events", "tasks", "all"]),
    default="events",
    show_default=True,
    help="Tasks too after Redis lost its queues (tasks are idempotent).",
)
def outbox_replay(since: str, until: str | None, workspace: str | None, what: str) -> None:
    """Publish again, in order and under their original ids, rows already published."""
    checked_settings()
    kinds = {
        "events": (OutboxKind.EVENT,),
        "tasks": (OutboxKind.TASK,),
        "all": (OutboxKind.EVENT, OutboxKind.TASK),
    }[what]
    _replay(since, until, workspace, kinds)


@click.group("events")
def events_group() -> None:
    """Events other services consume (docs/events.md)."""


@events_group.command("replay")
@_since
@_until
@_workspace_option
def events_replay(since: str, until: str | None, workspace: str | None) -> None:
    """Append to the stream again the events written since a time (same ids and sequences).

    Every consumer group reads them again (the stream is shared); consumers skip by event id.
    """
    checked_settings()
    _replay(since, until, workspace, (OutboxKind.EVENT,))


@events_group.command("tail")
@click.option("--count", type=click.IntRange(1, 10_000), default=20, show_default=True)
def events_tail(count: int) -> None:
    """The last events on the stream, oldest first (one JSON document per line)."""
    settings = checked_settings()
    from workers.core.redis import client

    entries: Any = client().xrevrange(settings.effective_events_stream, count=count)
    for _entry_id, fields in reversed(entries or []):
        raw = fields[b"event"]
        click.echo(raw.decode() if isinstance(raw, bytes) else str(raw))


COMMANDS = (audit, outbox_group, events_group)

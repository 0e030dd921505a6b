"""Every time the panel shows: a ``<time>`` element in UTC, to the second, that the page's script
turns into the viewer's own time zone (``panel_behaviour.js``, Intl.DateTimeFormat); its title
keeps UTC for hovering, and its text stays UTC where scripts do not run."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from models import SyncRunStatus, utcnow
from workers.connections.status import SyncRunOut
from workers.handoffs.views import NextHandoffOut

SYNC_OUTCOME_WORDS: dict[str, str] = {
    SyncRunStatus.SUCCEEDED: "succeeded",
    SyncRunStatus.FAILED: "failed",
    SyncRunStatus.SKIPPED: "skipped (the connection changed while it ran)",
}


def as_utc(value: datetime) -> datetime:
    """Aware in UTC (a naive value, as SQLite gives it back, is already UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_words(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(value: datetime) -> Markup:
    """``<time datetime="...Z" title="... UTC" data-local>... UTC</time>``."""
    words = utc_words(value)
    return Markup('<time datetime="{}" title="{}" data-local>{}</time>').format(
        iso_utc(value), words, words
    )


def ago(value: datetime) -> str:
    seconds = max(0, int((utcnow() - as_utc(value)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def when(value: datetime | None) -> Markup | str:
    """A moment, or "never"."""
    return time_tag(value) if value else "never"


def exact(value: datetime) -> Markup:
    """A moment and how long ago it was: "<time> (5 min ago)"."""
    return Markup("{} ({})").format(time_tag(value), ago(value))


def last_sync_words(run: SyncRunOut | None, reason: bool = True) -> Markup | str:
    """The last sync *run* (time and outcome), which a quiet healthy connection renews every
    interval; "last change" (``last_synced_at``) is shown separately. ``reason=False`` leaves a
    failure's words out: they tell an admin what to do, which a Member cannot."""
    if run is None:
        return "not yet"
    at = run.finished_at or run.started_at
    words = SYNC_OUTCOME_WORDS.get(run.status, run.status)
    if run.status == SyncRunStatus.SUCCEEDED:
        changes = run.rows_created + run.rows_updated + run.rows_deleted
        if changes == 0:
            words += ", nothing changed"
        else:
            words += f", {changes} change{'' if changes == 1 else 's'}"
    elif run.status == "failed" and run.error and reason:
        words += f": {run.error}"
    return Markup("{} — {}").format(exact(at), words)


def handoff_view(handoff: NextHandoffOut | None) -> dict[str, object] | None:
    """The next handoff to the second: who, and when as a ``<time>`` element."""
    if handoff is None:
        return None
    at: datetime = handoff.at
    names = [p.name for p in handoff.people]
    return {
        "who": ", ".join(names) if names else "nobody",
        "iso": iso_utc(at),
        "utc": utc_words(at),
        "time": time_tag(at),
    }

"""Every time the panel shows is a <time> in UTC to the second, which the page's script turns
into the viewer's own zone (api_stub/panel/times.py); the title keeps UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from api_stub.panel import times
from workers.connections.status import SyncRunOut
from workers.handoffs.views import HandoffPersonOut, NextHandoffOut

AT = datetime(2026, 12, 8, 13, 5, 9, 123456, tzinfo=UTC)
TAG = (
    '<time datetime="2026-12-08T13:05:09Z" title="2026-12-08 13:05:09 UTC" data-local>'
    "2026-12-08 13:05:09 UTC</time>"
)


def test_a_moment_is_a_time_element_in_utc_to_the_second() -> None:
    assert times.time_tag(AT) == TAG
    # Another offset, or a naive value as SQLite gives it back, is the same instant in UTC.
    assert times.time_tag(AT.astimezone(timezone(timedelta(hours=9)))) == TAG
    assert times.time_tag(AT.replace(tzinfo=None)) == TAG
    assert times.when(None) == "never"
    assert times.when(AT) == TAG
    assert str(times.exact(AT)).startswith(TAG + " (")


def test_the_last_sync_words_keep_the_time_element_and_escape_the_error() -> None:
    run = SyncRunOut(
        status="failed",
        kind="scheduled",
        started_at=AT,
        finished_at=AT,
        duration_ms=None,
        rows_created=0,
        rows_updated=0,
        rows_deleted=0,
        requests_made=0,
        error="PagerDuty answered <500>.",
    )
    words = str(times.last_sync_words(run))
    assert words.startswith(TAG)
    assert words.endswith(" — failed: PagerDuty answered &lt;500&gt;.")
    assert times.last_sync_words(None) == "not yet"


def test_the_next_handoff_carries_its_time_element() -> None:
    bob = HandoffPersonOut(pagerduty_user_id="PBOB", name="Bob", member_id=None)
    view = times.handoff_view(NextHandoffOut(at=AT, people=[bob], text="Bob from 13:05 UTC"))
    assert view is not None
    assert (view["who"], view["iso"], str(view["time"])) == ("Bob", "2026-12-08T13:05:09Z", TAG)
    assert times.handoff_view(None) is None

"""Beat's fan-out on a fake clock against the real database: every due connection is picked in
every round, once, however late (or early) the round runs; big rounds split into shards that
never publish more than the cap."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import AuthMethod, ConnectionStatus, PagerDutyConnection, Workspace
from tests.support.outbox import captured_direct_publishes
from workers.core.settings import get_settings, reset_settings_cache
from workers.sync import fanout

pytestmark = pytest.mark.both_databases

CHECK = "pagerduty.check_connections"
ROUND = "pagerduty.schedule_syncs"
T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    with captured_direct_publishes(monkeypatch) as messages:
        yield messages


def _connections(session: Any, count: int) -> set[str]:
    workspaces = [Workspace(id=uuid.uuid4(), name=f"fan-out {n}") for n in range(count)]
    session.add_all(workspaces)
    session.flush()
    conns = [
        PagerDutyConnection(
            id=uuid.uuid4(),
            workspace_id=ws.id,
            auth_method=AuthMethod.API_KEY,
            region="us",
            status=ConnectionStatus.CONNECTED.value,
            api_key="u+testkey",
            connected_at=T0,
        )
        for ws in workspaces
    ]
    session.add_all(conns)
    session.commit()
    return {str(c.id) for c in conns}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Batches of 3: a fleet of 30 is ten messages, spread like the connections they hold."""
    monkeypatch.setenv("RRPD_CHECK_BATCH_SIZE", "3")
    reset_settings_cache()
    yield 3
    monkeypatch.delenv("RRPD_CHECK_BATCH_SIZE")
    reset_settings_cache()


def _synced(messages: list[dict[str, Any]]) -> Counter[str]:
    """How often each connection was sent for a check (in any batch)."""
    return Counter(
        cid for m in messages if m["name"] == CHECK for cid in m["kwargs"]["connection_ids"]
    )


def _claimed(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["kwargs"]["connection_ids"]) for m in messages if m["name"] == CHECK)


def test_every_connection_is_enqueued_exactly_once_in_every_round(session, sent) -> None:
    ids = _connections(session, 30)
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    rng = random.Random(11)
    # Beat's rounds as measured: 4-19 ms after the tick, some early (a skewed clock), one 25 s
    # late (behind other work on its worker).
    delays = [rng.uniform(0.004, 0.019) for _ in range(12)] + [-0.010, -0.003, 25.0, 0.005]
    for k, delay in enumerate(delays):
        sent.clear()
        result = fanout.schedule_syncs(T0 + k * interval + timedelta(seconds=delay))
        counts = _synced(sent)
        assert set(counts) == ids, f"round {k} ({delay * 1000:.0f} ms) missed some"
        assert set(counts.values()) == {1}
        # Batches of RRPD_CHECK_BATCH_SIZE (50): one message for the 30.
        assert result == {"enqueued": len(ids), "batches": 1, "shards": 0}
    # Periodic work stores no result and no STARTED state.
    assert all(m.get("ignore_result") is True for m in sent)


def test_each_connection_is_synced_one_interval_apart_not_interval_plus_or_minus_jitter(
    session, sent, small_batches
) -> None:
    """The spread countdown is the connection's own, every round: a fresh draw made one
    connection's gaps range over 40-80 s, so a change in PagerDuty could wait 80 s to show."""
    ids = _connections(session, 30)
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    jitter = get_settings().sync_jitter_seconds
    starts: dict[str, list[datetime]] = {cid: [] for cid in ids}
    for k in range(5):
        sent.clear()
        tick = T0 + k * interval + timedelta(seconds=0.01)
        fanout.schedule_syncs(tick)
        for m in sent:
            if m["name"] == CHECK:
                delay = timedelta(seconds=m.get("countdown") or 0)
                for cid in m["kwargs"]["connection_ids"]:
                    starts[cid].append(tick + delay)
    gaps = {b - a for times in starts.values() for a, b in itertools.pairwise(times)}
    assert gaps == {interval}
    offsets = sorted((times[0] - T0).total_seconds() for times in starts.values())
    # ... and the fleet is still spread over the window, not one burst.
    assert offsets[-1] - offsets[0] > jitter / 2
    assert all(0 <= o < jitter + 1 for o in offsets)


def test_a_round_arriving_after_the_next_tick_enqueues_nothing_twice(session, sent) -> None:
    ids = _connections(session, 10)
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    fanout.schedule_syncs(T0 + timedelta(seconds=0.01))
    # Round 1 is delayed past round 2's tick: round 2 runs first, then round 1 arrives.
    sent.clear()
    fanout.schedule_syncs(T0 + 2 * interval + timedelta(seconds=0.012))
    late = fanout.schedule_syncs(T0 + 2 * interval + timedelta(seconds=10))
    assert _synced(sent) == Counter(dict.fromkeys(ids, 1))
    assert late["enqueued"] == 0
    # ... and the cadence is kept: round 3, on time, gets every connection again.
    sent.clear()
    fanout.schedule_syncs(T0 + 3 * interval + timedelta(seconds=0.007))
    assert set(_synced(sent)) == ids


def test_a_late_round_still_enqueues_what_is_due(session, sent) -> None:
    ids = _connections(session, 10)
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    fanout.schedule_syncs(T0)
    sent.clear()
    # The next round ran 50 s late (no expiry discards it): everything due is enqueued.
    fanout.schedule_syncs(T0 + interval + timedelta(seconds=50))
    assert _synced(sent) == Counter(dict.fromkeys(ids, 1))


def test_two_concurrent_rounds_never_enqueue_a_connection_twice(session, sent) -> None:
    ids = _connections(session, 300)
    interval = timedelta(seconds=get_settings().sync_interval_seconds)
    for k in range(3):
        sent.clear()
        now = T0 + k * interval + timedelta(seconds=0.01)
        threads = [
            threading.Thread(target=fanout.schedule_syncs, args=(now + timedelta(seconds=d),))
            for d in (0.0, 0.003)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert _synced(sent) == Counter(dict.fromkeys(ids, 1))


def _run_round(now: datetime, sent: list[dict[str, Any]], *, cap: int) -> list[int]:
    """A beat round, then every shard task it (or a shard) published, as workers would: the
    number of connections each task sent for a check."""
    per_task: list[int] = []
    before = len(sent)
    fanout.schedule_syncs(now)
    per_task.append(_claimed(sent[before:]))
    done = before
    while True:
        shards = [m for m in sent[done:] if m["name"] == ROUND]
        done = len(sent)
        if not shards:
            return per_task
        for message in shards:
            mark = len(sent)
            fanout.schedule_syncs(now, cap=cap, **message["kwargs"])
            per_task.append(_claimed(sent[mark:]))


def test_five_thousand_due_connections_are_each_published_once_by_shards(session, sent) -> None:
    ids = _connections(session, 5_000)
    per_task = _run_round(T0, sent, cap=fanout.SHARD_CAP)
    assert _synced(sent) == Counter(dict.fromkeys(ids, 1))
    assert per_task[0] == 0  # the beat round only published shards
    assert len(per_task) > 2
    assert max(per_task) <= fanout.SHARD_CAP


def test_a_shard_over_its_cap_publishes_itself_again_and_misses_nothing(session, sent) -> None:
    ids = _connections(session, 2_500)
    # Shards of about 1,000 with a cap of 300 each: every shard continues in more messages.
    per_task = _run_round(T0, sent, cap=300)
    assert _synced(sent) == Counter(dict.fromkeys(ids, 1))
    assert max(per_task) <= 300
    assert len(per_task) >= 2_500 // 300


def test_a_shard_number_outside_the_shards_claims_nothing(session, sent) -> None:
    _connections(session, 3)
    assert fanout.schedule_syncs(T0, shard=4, shards=4) == {
        "enqueued": 0,
        "batches": 0,
        "shards": 0,
    }
    assert not sent

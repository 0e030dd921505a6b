"""Real ``rrpd beat`` processes on a Redis of the test's own, killed and started again.

Issue 13: a Redis restart ended beat (``redis.ConnectionError``, exit status 1), and a beat
started or waiting for the lock while Redis was down died with ``AttributeError: 'NoneType'
object has no attribute 'extend'``; both HA beats died together and nothing was scheduled any
more. What an operator would notice is whether scheduled tasks keep arriving: these tests read
them off the ``sync`` queue (nothing consumes it here), with the sender of each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
import redis

from tests.support.private_services import PrivateRedis, private_redis
from tests.support.processes import rrpd_process

pytestmark = pytest.mark.integration

INTERVAL = 2  # seconds between two schedule_syncs (RRPD_SYNC_INTERVAL_SECONDS)


def _env(server: PrivateRedis, interval: int) -> dict[str, str]:
    return {
        "RRPD_BROKER_URL": f"{server.url}/0",
        "RRPD_RESULT_BACKEND": f"{server.url}/1",
        "RRPD_REDBEAT_URL": f"{server.url}/0",
        "RRPD_SYNC_INTERVAL_SECONDS": str(interval),
        "RRPD_REDIS_RETRY_MAX_SECONDS": "1",
    }


@contextmanager
def _beats(server: PrivateRedis, count: int = 1, interval: int = INTERVAL) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(rrpd_process(f"beat-{n}", "beat", env=_env(server, interval)))
            for n in range(count)
        ]


def _sent(server: PrivateRedis) -> list[tuple[datetime, str]]:
    """(sent at, sender) of every schedule_syncs waiting on the schedule queue."""
    from tests.support.env import TEST_ENV

    client = redis.Redis.from_url(f"{server.url}/0", socket_timeout=2)
    try:
        raw = client.lrange(f"{TEST_ENV['RRPD_REDIS_KEY_PREFIX']}:schedule", 0, -1)
    except redis.ConnectionError:
        return []
    finally:
        client.close()
    out = []
    for message in raw:
        headers = json.loads(message)["headers"]
        if headers["task"] == "pagerduty.schedule_syncs":
            # Every message carries its send time (workers.tasking.app).
            sent_at = datetime.fromtimestamp(headers["sent_at"], UTC)
            out.append((sent_at, headers["origin"]))
    return sorted(out)


def _wait_for_sends(server: PrivateRedis, beats: list[Any], at_least: int, timeout: float) -> float:
    started = time.monotonic()
    while len(_sent(server)) < at_least:
        for beat in beats:
            assert beat.poll() is None, f"beat exited ({beat.returncode}); see {beat.log_path}"
        assert time.monotonic() - started < timeout, "beat sent nothing; see the beat logs"
        time.sleep(0.1)
    return time.monotonic() - started


def test_beat_keeps_scheduling_after_redis_restarts_under_it() -> None:
    """Redis comes back empty each time: beat writes its schedule back and sends at once,
    not a period (60 s in production, 30 s here) later."""
    with private_redis() as server, _beats(server, interval=30) as beats:
        _wait_for_sends(server, beats, 1, timeout=15)
        for _ in range(2):
            server.stop()
            time.sleep(4)
            assert beats[0].poll() is None, f"beat exited with Redis; see {beats[0].log_path}"
            server.start()  # empty: the schedule, the lock and the queue are gone
            recovered = _wait_for_sends(server, beats, 1, timeout=15)
            print(f"beat: Redis back -> first scheduled task sent in {recovered:.1f} s")
        assert beats[0].poll() is None


def test_a_beat_started_while_redis_is_down_starts_scheduling_once_it_is_up() -> None:
    with private_redis() as server:
        server.stop()
        with _beats(server) as beats:
            time.sleep(5)
            assert beats[0].poll() is None, f"beat exited; see {beats[0].log_path}"
            server.start()
            recovered = _wait_for_sends(server, beats, 1, timeout=15)
            print(f"beat started without Redis: Redis up -> first task sent in {recovered:.1f} s")


def test_two_beats_survive_a_redis_restart_and_only_one_sends() -> None:
    with private_redis() as server, _beats(server, count=2) as beats:
        _wait_for_sends(server, beats, 2, timeout=30)
        server.stop()
        time.sleep(4)
        for beat in beats:
            assert beat.poll() is None, f"a beat exited with Redis; see {beat.log_path}"
        server.start()
        _wait_for_sends(server, beats, 1, timeout=30)
        # Long enough for the standby to poll for the lock twice (every 5 s).
        time.sleep(5 * INTERVAL)
        sent = _sent(server)
        for beat in beats:
            assert beat.poll() is None, f"a beat exited; see {beat.log_path}"
        senders = {origin for _, origin in sent}
        assert len(senders) == 1, f"both beats sent after the restart: {sent}"
        gaps = [(b - a).total_seconds() for (a, _), (b, _) in pairwise(sent)]
        assert gaps, f"sent twice in one period: {gaps}"
        assert min(gaps) > INTERVAL / 2, f"sent twice in one period: {gaps}"
        # One send per period, not two.
        assert len(sent) <= 2 + (sent[-1][0] - sent[0][0]).total_seconds() / INTERVAL


def test_a_beat_takes_its_own_lock_back_when_redis_kept_it() -> None:
    """With AOF (production's setting) the lock outlives the restart, still this beat's: it
    holds it again at once instead of waiting for it to expire (60 s here, 5 min by default)
    while nobody schedules anything."""
    with private_redis(appendonly=True) as server, _beats(server) as beats:
        _wait_for_sends(server, beats, 1, timeout=30)
        server.stop()
        time.sleep(3)
        server.start()  # with the lock, the schedule and the queued sends
        before = len(_sent(server))
        recovered = _wait_for_sends(server, beats, before + 1, timeout=20)
        print(f"beat, Redis kept its data: Redis back -> next task sent in {recovered:.1f} s")
        assert "Redis kept this beat's lock" in beats[0].log_path.read_text()

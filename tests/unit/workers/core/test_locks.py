"""Leases against the real Redis: renewed while the holder lives, lapsed soon after it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from workers.core import locks
from workers.core.redis import client, key


def _name() -> str:
    return f"test-lease:{uuid.uuid4().hex[:8]}"


def test_a_live_holder_keeps_its_lease_well_past_the_ttl(redis_client: object) -> None:
    name = _name()
    with locks.hold_lease(name, 0.6) as lease:
        assert lease is not None
        time.sleep(1.8)  # three TTLs
        info = locks.lease_info(name)
        assert info is not None
        assert info.holder.endswith(f":{os.getpid()}")
        assert lease.renewals >= 4
        assert not lease.lost
        with locks.hold_lease(name, 0.6) as other:
            assert other is None
    assert locks.lease_info(name) is None  # released at the end of the block


def test_a_killed_holder_s_lease_lapses_within_its_ttl(redis_client: object) -> None:
    name = _name()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from workers.core import locks\n"
                f"lease = locks.Lease({name!r}, 1.0)\n"
                "assert lease.acquire()\n"
                "print('held', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held"
        time.sleep(1.5)  # renewed by the child's heartbeat meanwhile
        assert locks.lease_info(name) is not None
        child.kill()
        killed_at = time.monotonic()
        while locks.lease_info(name) is not None:
            assert time.monotonic() - killed_at < 1.5, "the dead holder's lease did not lapse"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    with locks.hold_lease(name, 1.0) as lease:
        assert lease is not None


def test_a_holder_whose_lease_was_taken_over_never_extends_or_deletes_it(
    redis_client: object,
) -> None:
    name = _name()
    lease = locks.Lease(name, 5.0, renew_every=60)
    assert lease.acquire()
    # Lapsed and taken by someone else (as after a long stall).
    client().set(key("lock", name), "successor|other:1|2026-01-01T00:00:00+00:00", px=3000)
    assert lease.renew() is False
    assert lease.lost
    lease.release()
    assert client().get(key("lock", name)) == b"successor|other:1|2026-01-01T00:00:00+00:00"
    assert 0 < int(client().pttl(key("lock", name))) <= 3000  # not extended to 5 s
    info = locks.lease_info(name)
    assert info is not None
    assert info.holder == "other:1"


def test_leases_lists_held_ones_by_prefix(redis_client: object) -> None:
    tag = uuid.uuid4().hex[:6]
    with locks.hold_lease(f"sync:{tag}-a", 5) as a, locks.hold_lease(f"sync:{tag}-b", 2) as b:
        assert a is not None
        assert b is not None
        found = [i.name for i in locks.leases(f"sync:{tag}")]
        assert found == [f"sync:{tag}-b", f"sync:{tag}-a"]  # soonest to lapse first
    assert locks.leases(f"sync:{tag}") == []

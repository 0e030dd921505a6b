"""A lease whose holder is SIGKILLed lapses within its TTL (a real process, real Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from workers.core import locks


def test_a_killed_holder_s_lease_lapses_within_its_ttl(redis_client: object) -> None:
    name = f"test-lease:{uuid.uuid4().hex[:8]}"
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

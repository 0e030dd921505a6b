"""Fixtures for integration tests: the PagerDuty simulator and real ``rrpd worker`` processes.

Registered from ``tests/conftest.py``. The simulator runs in a thread of the test process (one
per xdist worker); the Celery workers are real processes started once per test process with
the environment pointing at that simulator and at this process's database and Redis prefix.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from pagerduty_sim.server import SimulatorHandle, start_simulator
from tests.support import processes
from workers.core.settings import reset_settings_cache


@pytest.fixture(scope="session")
def pd_sim() -> Iterator[SimulatorHandle]:
    """The simulator (demo scenario, OAuth consent auto-approved), and our settings aimed at it."""
    with start_simulator("demo", auto_approve=True) as handle:
        os.environ.update(sim_env(handle))
        reset_settings_cache()
        yield handle


def sim_env(handle: SimulatorHandle) -> dict[str, str]:
    """Our settings aimed at the simulator. Both issuers it can sign id_tokens with are
    accepted, as both PagerDuty issuers are by default (workers.pagerduty.oauth)."""
    return {
        "RRPD_PAGERDUTY_API_URL": handle.base_url,
        "RRPD_PAGERDUTY_EU_API_URL": handle.eu_base_url,
        "RRPD_PAGERDUTY_IDENTITY_URL": handle.identity_url,
        "RRPD_PAGERDUTY_ID_TOKEN_ISSUERS": f"{handle.issuer('identity')},{handle.issuer('app')}",
    }


@pytest.fixture
def sim(pd_sim: SimulatorHandle) -> Iterator[SimulatorHandle]:
    """The simulator reset to the demo scenario (no faults, no clock offset) for this test."""
    pd_sim.control.post("/reset").raise_for_status()
    yield pd_sim
    pd_sim.control.post("/reset").raise_for_status()


def demo_api_key(handle: SimulatorHandle, label: str = "demo-readonly") -> str:
    for key in handle.credentials()["api_keys"]:
        if key["label"] == label:
            return key["key"]
    raise KeyError(label)


def demo_oauth_app(handle: SimulatorHandle, label: str = "demo-oauth") -> dict[str, str]:
    for app in handle.credentials()["oauth_apps"]:
        if app["label"] == label:
            return app
    raise KeyError(label)


@pytest.fixture(scope="session")
def live_workers(
    database_url: str, pd_sim: SimulatorHandle
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One worker per queue, as in production, for the whole test process."""
    env = sim_env(pd_sim)
    with processes.workers(
        {
            "interactive": ("interactive", 2, "prefork"),
            "sync": ("sync", 2, "prefork"),
            # Beat's rounds have a queue and a consumer of their own (docs/operations.md).
            "schedule": ("schedule", 2, "threads"),
        },
        env=env,
    ) as procs:
        yield procs


@pytest.fixture(scope="module")
def api_url(pd_sim: SimulatorHandle, database_url: str) -> Iterator[str]:
    """``rrpd api`` as a real process, on the port every process's RRPD_PUBLIC_URL names (the
    OAuth redirect URI must be the same for the API and the workers)."""
    from tests.support.env import API_PORT, TEST_ENV

    url = TEST_ENV["RRPD_PUBLIC_URL"]
    env = sim_env(pd_sim)
    with processes.rrpd_process("api", "api", "--port", str(API_PORT), env=env) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "API exited before it started"
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.1)
        yield url

"""End-to-end fixtures: the real API process, live workers, the simulator and headless Chromium.

Chromium is Debian's package at /usr/bin/chromium (``scripts/ensure-browser.sh``, run by
``make test``); Playwright drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pagerduty_sim.server import SimulatorHandle
from tests.conftest import API_PORT, TEST_ENV
from tests.support import processes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
# Every run keeps its screenshots under tests/artifacts/; RRPD_UPDATE_SCREENSHOTS=1 also
# refreshes the committed ones in docs/screenshots/ (see docs/panel.md).
ARTIFACT_SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def api_url(pd_sim: SimulatorHandle, database_url: str) -> Iterator[str]:
    """``rrpd api`` as a real process on the port every process's RRPD_PUBLIC_URL names."""
    url = TEST_ENV["RRPD_PUBLIC_URL"]
    env = {
        "RRPD_PAGERDUTY_API_URL": pd_sim.base_url,
        "RRPD_PAGERDUTY_EU_API_URL": pd_sim.eu_base_url,
        "RRPD_PAGERDUTY_IDENTITY_URL": pd_sim.identity_url,
    }
    with processes.rrpd_process("api-e2e", "api", "--port", str(API_PORT), env=env) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "API did not start"
            time.sleep(0.1)
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert os.access(CHROMIUM, os.X_OK), "run scripts/ensure-browser.sh (make test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Shots:
    """Numbered screenshots of a walkthrough's steps."""

    def __init__(self) -> None:
        self.taken: list[Path] = []
        ARTIFACT_SHOTS.mkdir(parents=True, exist_ok=True)
        self.update_docs = os.environ.get("RRPD_UPDATE_SCREENSHOTS") == "1"
        if self.update_docs:
            DOC_SHOTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str) -> Path:  # type: ignore[no-untyped-def]
        path = ARTIFACT_SHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 1000, f"empty screenshot {path}"
        if self.update_docs:
            (DOC_SHOTS / path.name).write_bytes(path.read_bytes())
        self.taken.append(path)
        return path


@pytest.fixture
def shots() -> Shots:
    return Shots()

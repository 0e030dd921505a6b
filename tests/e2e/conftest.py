"""End-to-end fixtures: the real API process, live workers, the simulator and headless Chromium.

Chromium is Debian's package at /usr/bin/chromium (``scripts/ensure-browser.sh``, run by
``make test``); Playwright drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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

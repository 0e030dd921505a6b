"""The coverage floor `make test` gates on (`.ci/coverage-floor`) only ever rises.

`make test` fails when the suite's total (branch) coverage falls below the floor; this test
fails when a commit lowers the floor itself, so coverage cannot be traded away by editing the
number. Each committed value is read from git history, oldest first.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOOR = ".ci/coverage-floor"


def parse(text: str) -> float:
    value = float(text.strip())
    assert 0 < value <= 100, f"{FLOOR} must hold a percentage, not {text!r}"
    return value


def committed_floors() -> list[tuple[str, float]]:
    """(commit, floor) for every commit that changed the file, oldest first."""
    log = subprocess.run(
        ["git", "log", "--reverse", "--format=%h", "--", FLOOR],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    floors = []
    for commit in log:
        shown = subprocess.run(
            ["git", "show", f"{commit}:{FLOOR}"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if shown.returncode == 0:  # a commit that deleted the file has nothing to compare
            floors.append((commit, parse(shown.stdout)))
    return floors


def test_the_floor_is_a_percentage() -> None:
    parse((ROOT / FLOOR).read_text())


def test_the_makefile_gates_on_the_floor() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"--cov-fail-under=$$(cat {FLOOR})" in makefile


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git history"
)
def test_no_commit_lowers_the_floor() -> None:
    floors = committed_floors()
    for (before, low), (after, high) in itertools.pairwise(floors):
        assert high >= low, (
            f"{after} lowered the coverage floor from {low} (set in {before}) to {high}"
        )
    # The working tree may raise the floor before it is committed, never lower it.
    if floors:
        assert parse((ROOT / FLOOR).read_text()) >= floors[-1][1]

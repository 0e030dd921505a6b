"""``rrpd run``: what a newcomer sees when something is in the way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port


@contextmanager
def listening() -> Iterator[int]:
    """Another program holding a port (and answering nothing useful)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _run_stack(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RRPD_ENV": "local",
        "RRPD_DATABASE_URL": f"sqlite:///{tmp_path}/rrpd.sqlite3",
        "RRPD_VAR_DIR": str(tmp_path),
    }
    env.pop("RRPD_PUBLIC_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "rrpd", "run", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--api-port", "the API"),
        ("--flower-port", "Flower"),
        ("--sim-port", "the PagerDuty simulator"),
    ],
)
def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path, option, what) -> None:
    ports = {"--api-port": free_port(), "--flower-port": free_port(), "--sim-port": free_port()}
    with listening() as taken:
        ports[option] = taken
        proc = _run_stack(tmp_path, *(str(x) for kv in ports.items() for x in kv))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ready" not in proc.stdout
    assert "rr-pagerduty local stack" not in proc.stdout  # nothing was started
    assert not (tmp_path / "rrpd.sqlite3").exists()  # not even the database
    assert (
        f"rrpd run: port {taken} ({what}) is already in use by another program; "
        f"choose another with {option}" in proc.stderr
    ), proc.stderr


def test_two_parts_on_one_port_are_refused(tmp_path: Path) -> None:
    port = free_port()
    sim = str(free_port())
    proc = _run_stack(
        tmp_path, "--api-port", str(port), "--flower-port", str(port), "--sim-port", sim
    )
    assert proc.returncode == 1
    assert f"rrpd run: port {port} is given to both the API and Flower" in proc.stderr

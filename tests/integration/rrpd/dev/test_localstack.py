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

from tests.support.processes import ROOT, free_ports


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
        check=False,
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
    ports = dict(zip(("--api-port", "--flower-port", "--sim-port"), free_ports(3), strict=True))
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
    port, sim_port = free_ports(2)
    sim = str(sim_port)
    proc = _run_stack(
        tmp_path, "--api-port", str(port), "--flower-port", str(port), "--sim-port", sim
    )
    assert proc.returncode == 1
    assert f"rrpd run: port {port} is given to both the API and Flower" in proc.stderr


# --- log format of the parts ----------------------------------------------------------------------


def _read_until(fd: int, wanted, timeout: float) -> str:  # type: ignore[no-untyped-def]
    import select
    import time

    out = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk.decode(errors="replace")
            if wanted(out):
                return out
    return out


@pytest.mark.integration
def test_on_a_terminal_the_parts_log_readable_lines(tmp_path: Path) -> None:
    """``make run`` in a terminal: the supervisor pipes its parts' output, so without help
    every part saw "not a terminal" and logged JSON."""
    import pty
    import signal

    master, slave = pty.openpty()
    env = {
        **os.environ,
        "RRPD_ENV": "local",
        "RRPD_LOG_FORMAT": "auto",
        "RRPD_DATABASE_URL": f"sqlite:///{tmp_path}/rrpd.sqlite3",
        "RRPD_VAR_DIR": str(tmp_path),
    }
    env.pop("RRPD_PUBLIC_URL", None)
    argv = [sys.executable, "-m", "rrpd", "run"]
    for option, port in zip(
        ("--api-port", "--flower-port", "--sim-port"), free_ports(3), strict=True
    ):
        argv += [option, str(port)]
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    try:
        out = _read_until(master, lambda text: "Application startup complete" in text, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: rrpd run stops every part it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    api_lines = [line for line in out.splitlines() if line.startswith("api ")]
    startup = [line for line in api_lines if "Application startup complete" in line]
    assert startup, out[-3000:]
    assert '"event"' not in startup[0], startup[0]
    assert "{" not in startup[0].split("|", 1)[1][:3], startup[0]
    assert "[info" in startup[0], startup[0]


@pytest.mark.parametrize(
    ("setting", "env", "on_terminal", "expected"),
    [
        ("auto", "local", True, "console"),
        ("auto", "local", False, "json"),
        ("auto", "production", True, "json"),
        ("json", "local", True, "json"),
        ("console", "local", False, "console"),
    ],
)
def test_parts_follow_auto_as_if_they_were_on_rrpd_runs_terminal(
    tmp_path: Path, setting: str, env: str, on_terminal: bool, expected: str
) -> None:
    from rrpd.dev.localstack import child_log_format
    from workers.core.settings import Settings

    settings = Settings(log_format=setting, env=env, var_dir=tmp_path)
    assert child_log_format(settings, on_terminal=on_terminal) == expected

"""Project processes for the benchmarks: ``rrpd <args>`` started with a log of its own, stopped
with its whole process group (a worker's pool children included)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_rrpd(
    label: str, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``rrpd <args>``, its output in ``$RRPD_VAR_DIR/<label>.log``, in a session of its own."""
    log = Path(os.environ["RRPD_VAR_DIR"]) / f"{label}.log"
    return subprocess.Popen(
        [sys.executable, "-m", "rrpd", *args],
        env={**os.environ, **(extra_env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

"""A Redis and a PostgreSQL of a test's own, which it may stop and start at will.

The machine's shared servers (127.0.0.1:6379 and :5432) serve every test process at once, so a
fault test must never stop them. These are real servers on free ports, started from the same
binaries: a test can kill one mid-task, keep it down across a commit, and bring it back on the
same port with the same data (PostgreSQL) or empty (Redis keeps nothing on disk, like the
shared one).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


@dataclass
class PrivateRedis:
    """``redis-server`` on a free port; ``stop()`` kills it (SIGKILL: an outage, not a
    shutdown), ``start()`` brings it back on the same port, empty."""

    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(lambda: _answers(self.port), f"redis on {self.port}", 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        _wait(lambda: not _answers(self.port), f"redis on {self.port} stopping", 10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs the tests as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth) on a free port. ``stop(mode)`` takes it down
    (``immediate``: like a crash), ``start()`` brings it back with its data."""

    port: int = field(default_factory=_free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rrpd-pg-")))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.directory / "server.log"),
                    "-o",
                    (
                        f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                        # fsync off: a stop here kills the server process, not the machine, so
                        # the OS still holds every committed page; commits stay synchronous.
                        "-c fsync=off -c full_page_writes=off"
                    ),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _answers(self.port), f"postgres on {self.port}", 30)

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: not _answers(self.port), f"postgres on {self.port} stopping", 30)

    @property
    def running(self) -> bool:
        return _answers(self.port)

    def remove(self) -> None:
        with suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.remove()

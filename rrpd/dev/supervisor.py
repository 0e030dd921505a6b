"""``rrpd run``: the whole local stack in the foreground, stopped as one by Ctrl-C.

Each part is a real ``rrpd`` process (the same commands production runs), started with the
same environment; output lines are prefixed with the part's name. If any part dies, the others
are stopped too, so nothing is left running half-broken.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def _pump(name: str, stream: IO[bytes], width: int) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<{width}} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


class Supervisor:
    def __init__(self, parts: Sequence[Part], base_env: dict[str, str]) -> None:
        self.parts = list(parts)
        self.base_env = base_env
        self._stopping = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopping.set())

    def start(self) -> None:
        # Handlers first: a Ctrl-C while parts are still being started must not leave the
        # ones already started running (they are in sessions of their own, so the terminal's
        # SIGINT never reaches them; only ``stop`` does).
        self._install_signal_handlers()
        width = max(len(p.name) for p in self.parts)
        for part in self.parts:
            if self._stopping.is_set():
                break
            env = {**self.base_env, **part.env}
            part.process = subprocess.Popen(  # noqa: S603 - our own rrpd commands
                part.argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert part.process.stdout is not None
            threading.Thread(
                target=_pump, args=(part.name, part.process.stdout, width), daemon=True
            ).start()

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM or until a part exits; then stop everything."""
        self._install_signal_handlers()
        code = 0
        while not self._stopping.is_set():
            for part in self.parts:
                if part.process is None:
                    continue
                rc = part.process.poll()
                if rc is not None:
                    print(
                        f"rrpd run: {part.name} exited with {rc}; stopping the others",
                        file=sys.stderr,
                    )
                    code = rc or 1
                    self._stopping.set()
                    break
            self._stopping.wait(0.5)
        self.stop()
        return code

    def stop(self, grace_seconds: float = 10.0) -> None:
        live = [p.process for p in self.parts if p.process and p.process.poll() is None]
        for proc in live:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)

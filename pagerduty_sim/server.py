"""Start the simulator for tests, benchmarks and local runs (in a thread or as a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from .app import SimApp
from .scenario import Scenario, scenario_to_dict
from .state import DEFAULT_ONCALLS_RATE_LIMIT, DEFAULT_RATE_LIMIT, SimState


@dataclass
class SimulatorHandle:
    base_url: str
    control: httpx.Client
    state: SimState | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def eu_base_url(self) -> str:
        return self.base_url + "/eu"

    @property
    def identity_url(self) -> str:
        return self.base_url + "/identity"

    @property
    def app_url(self) -> str:
        """Stands for https://app.pagerduty.com, the host of the id_token's other issuer."""
        return self.base_url + "/app"

    def issuer(self, kind: str = "identity") -> str:
        """The id_token issuer the simulator sends with ``id_token_issuer`` = ``kind``."""
        return (self.app_url if kind == "app" else self.identity_url) + "/global/oauth/anonymous"

    @property
    def authorize_url(self) -> str:
        return self.identity_url + "/oauth/authorize"

    @property
    def token_url(self) -> str:
        return self.identity_url + "/oauth/token"

    @property
    def jwks_url(self) -> str:
        return self.identity_url + "/global/oauth/anonymous/jwks"

    @property
    def control_url(self) -> str:
        return self.base_url + "/_sim"

    def credentials(self) -> dict[str, Any]:
        resp = self.control.get("/credentials")
        resp.raise_for_status()
        return resp.json()


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - display only
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def uvicorn_config(app: SimApp, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        access_log=False,
        timeout_keep_alive=30,
        backlog=4096,  # the fleet benchmark opens many connections at once
    )


def _wait_ready(
    control: httpx.Client, deadline: float, proc: subprocess.Popen[bytes] | None
) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"simulator process exited with code {proc.returncode}")
        try:
            if control.get("/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("simulator did not become ready in time")


@contextlib.contextmanager
def start_simulator(
    scenario: str | os.PathLike[str] | Scenario | dict[str, Any] = "demo",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    in_thread: bool = True,
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT,
    oncalls_rate_limit_per_minute: int = DEFAULT_ONCALLS_RATE_LIMIT,
    auto_approve: bool = False,
    log_level: str = "warning",
    latency_ms: int = 0,
    startup_timeout: float = 20.0,
) -> Iterator[SimulatorHandle]:
    """Run a simulator for the duration of the `with` block and yield its handle."""
    if in_thread:
        state = SimState(
            scenario,
            rate_limit_per_minute=rate_limit_per_minute,
            oncalls_rate_limit_per_minute=oncalls_rate_limit_per_minute,
            auto_approve=auto_approve,
            latency_ms=latency_ms,
        )
        sock = bind_socket(host, port)
        base = url_for(host, sock.getsockname()[1])
        server = uvicorn.Server(uvicorn_config(SimApp(state), log_level))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="pagerduty-sim", daemon=True
        )
        thread.start()
        control = httpx.Client(base_url=base + "/_sim", timeout=10.0)
        try:
            _wait_ready(control, time.monotonic() + startup_timeout, None)
            yield SimulatorHandle(base, control, state)
        finally:
            control.close()
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
        return

    tmp: str | None = None
    if isinstance(scenario, Scenario | dict):
        data = scenario_to_dict(scenario) if isinstance(scenario, Scenario) else scenario
        fd, tmp = tempfile.mkstemp(prefix="pdsim-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, default=str)
        scenario_arg = tmp
    else:
        scenario_arg = str(scenario)
    if port == 0:
        probe = bind_socket(host, 0)
        port = probe.getsockname()[1]
        probe.close()
    base = url_for(host, port)
    cmd = [
        sys.executable,
        "-m",
        "pagerduty_sim",
        "--host",
        host,
        "--port",
        str(port),
        "--scenario",
        scenario_arg,
        "--rate-limit",
        str(rate_limit_per_minute),
        "--oncalls-rate-limit",
        str(oncalls_rate_limit_per_minute),
        "--latency-ms",
        str(latency_ms),
        "--log-level",
        log_level,
    ]
    if auto_approve:
        cmd.append("--auto-approve")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    control = httpx.Client(base_url=base + "/_sim", timeout=10.0)
    try:
        _wait_ready(control, time.monotonic() + startup_timeout, proc)
        yield SimulatorHandle(base, control, None, proc)
    finally:
        control.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

"""What ``rrpd run`` starts, and the URLs it prints."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import threading
import time

from rrpd.dev.supervisor import Part, Supervisor
from workers.core.settings import Settings, get_settings
from workers.core.startup import check_configuration
from workers.tasking.contract import INTERACTIVE, SCHEDULE, SYNC

DEFAULT_PUBLIC_URL = Settings.model_fields["public_url"].default


def _rrpd() -> list[str]:
    exe = shutil.which("rrpd")
    return [exe] if exe else [sys.executable, "-m", "rrpd"]


def child_log_format(settings: Settings, *, on_terminal: bool) -> str:
    """The log format for the parts: ``auto`` decided as if each part wrote to our terminal.

    The parts' output is a pipe to this supervisor, so each one alone would always choose
    JSON; what counts is where the lines end up: ``rrpd run``'s own stdout. Production, a pipe
    or an explicit setting keep their meaning.
    """
    if settings.log_format != "auto":
        return settings.log_format
    if settings.is_production or not on_terminal:
        return "json"
    return "console"


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether another program already listens on ``host:port`` (what our parts bind)."""
    with socket.socket() as probe:
        # As uvicorn and tornado do, so a port merely in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def port_problems(ports: list[tuple[int, str, str]]) -> list[str]:
    """One line per port that cannot be used: ``ports`` is (port, part, option to change it).

    Checked before anything starts: otherwise the part that cannot bind dies after the others
    started, and the readiness probe may even be answered by whatever holds the port.
    """
    problems: list[str] = []
    seen: dict[int, str] = {}
    for port, part, option in ports:
        if port in seen:
            problems.append(
                f"rrpd run: port {port} is given to both {seen[port]} and {part}; choose another "
                f"with {option}"
            )
            continue
        seen[port] = part
        if _port_in_use(port):
            problems.append(
                f"rrpd run: port {port} ({part}) is already in use by another program; choose "
                f"another with {option} (or stop what is using it)"
            )
    return problems


def run_local_stack(*, api_port: int, flower_port: int, sim_port: int, use_simulator: bool) -> int:
    have_sim = importlib.util.find_spec("pagerduty_sim.cli") is not None
    ports = [
        (api_port, "the API", "--api-port (RRPD_PUBLIC_URL follows it unless you set it)"),
        (flower_port, "Flower", "--flower-port"),
    ]
    if use_simulator and have_sim:
        ports.append((sim_port, "the PagerDuty simulator", "--sim-port"))
    problems = port_problems(ports)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 1
    settings = get_settings()
    check_configuration(settings)
    env = dict(os.environ)
    # Every part must agree on the public URL: it is the OAuth redirect URI, which PagerDuty
    # compares exactly when the worker exchanges the code. An explicit setting (environment or
    # .env) wins; otherwise it follows --api-port. Either way it is passed to every part.
    public_url = settings.public_url.rstrip("/")
    if "RRPD_PUBLIC_URL" not in os.environ and public_url == DEFAULT_PUBLIC_URL:
        public_url = f"http://127.0.0.1:{api_port}"
    env["RRPD_PUBLIC_URL"] = public_url
    env["RRPD_LOG_FORMAT"] = child_log_format(settings, on_terminal=sys.stdout.isatty())
    if settings.app_integrations_url:
        env["RRPD_APP_INTEGRATIONS_URL"] = settings.app_integrations_url
    # The local secrets are generated into var/ once, here, before several processes start and
    # could race to create them.
    settings.encryption_key_material()
    settings.jwt_secret()
    seeded = _prepare_database(settings)
    parts: list[Part] = []
    if use_simulator and have_sim:
        sim = f"http://127.0.0.1:{sim_port}"
        env.update(
            RRPD_PAGERDUTY_API_URL=sim,
            RRPD_PAGERDUTY_EU_API_URL=f"{sim}/eu",
            RRPD_PAGERDUTY_IDENTITY_URL=f"{sim}/identity",
            # Both issuers the simulator can sign with (its id_token_issuer setting).
            RRPD_PAGERDUTY_ID_TOKEN_ISSUERS=(
                f"{sim}/identity/global/oauth/anonymous,{sim}/app/global/oauth/anonymous"
            ),
        )
        parts.append(
            Part(
                "pagerduty-sim",
                [*_rrpd(), "pagerduty-sim", "--port", str(sim_port), "--scenario", "demo"],
            )
        )
    rrpd = _rrpd()
    parts += [
        Part("api", [*rrpd, "api", "--port", str(api_port)]),
        Part(
            f"worker-{INTERACTIVE}",
            [*rrpd, "worker", "--queues", INTERACTIVE, "--concurrency", "2"],
        ),
        Part(
            f"worker-{SYNC}",
            [*rrpd, "worker", "--queues", SYNC, "--pool", "threads", "--concurrency", "8"],
        ),
        # Beat's rounds on a consumer of their own, so they never wait behind syncs: a few
        # threads suffice (a round is a few statements and a publish).
        Part(
            f"worker-{SCHEDULE}",
            [*rrpd, "worker", "--queues", SCHEDULE, "--pool", "threads", "--concurrency", "2"],
        ),
        Part("beat", [*rrpd, "beat"]),
        Part("flower", [*rrpd, "flower", "--port", str(flower_port)]),
    ]
    flower_auth = settings.flower_basic_auth.get_secret_value()
    print("rr-pagerduty local stack")
    print(f"  integrations panel : {env['RRPD_PUBLIC_URL']}/panel")
    print(f"  API (OpenAPI)      : {env['RRPD_PUBLIC_URL']}/docs")
    print(f"  Flower             : http://127.0.0.1:{flower_port}  (login {flower_auth})")
    if use_simulator and have_sim:
        print(
            f"  PagerDuty sim      : http://127.0.0.1:{sim_port}  "
            f"(consent page under /identity/oauth/authorize)"
        )
    print(
        f"  demo workspace     : {seeded.workspace_id}  ({len(seeded.members)} members, "
        f"{len(seeded.rotations)} rotations; pick who you are on the panel)"
    )
    print("  rrpd demo          : runs the three walkthroughs against this stack")
    print("  Ctrl-C stops everything.")
    supervisor = Supervisor(parts, env)
    supervisor.start()
    threading.Thread(
        target=_announce_ready, args=(supervisor, f"{public_url}/healthz"), daemon=True
    ).start()
    return supervisor.wait()


def _prepare_database(settings: Settings):  # type: ignore[no-untyped-def]
    """Migrate (idempotent) and seed the demo workspace before any part starts."""
    from rrpd.dev.seed import seed
    from workers.core.migrate import upgrade

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    return seed(settings.effective_database_url)


def _announce_ready(supervisor: Supervisor, health_url: str, timeout: float = 60) -> None:
    import httpx

    api = next((p for p in supervisor.parts if p.name == "api"), None)
    deadline = time.monotonic() + timeout
    while not supervisor.stopping and time.monotonic() < deadline:
        if api is not None and api.process is not None and api.process.poll() is not None:
            return  # our API died: whatever answers on its port is not us
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                print(f"rrpd run: ready ({health_url} answers)", flush=True)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)

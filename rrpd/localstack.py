"""What ``rrpd run`` starts, and the URLs it prints."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from rrpd.supervisor import Part, Supervisor
from workers.settings import get_settings


def _rrpd() -> list[str]:
    exe = shutil.which("rrpd")
    return [exe] if exe else [sys.executable, "-m", "rrpd"]


def run_local_stack(*, api_port: int, flower_port: int, sim_port: int, use_simulator: bool) -> int:
    settings = get_settings()
    settings.check()
    env = dict(os.environ)
    public_url = f"http://127.0.0.1:{api_port}"
    env.setdefault("RRPD_PUBLIC_URL", public_url)
    parts: list[Part] = []
    have_sim = importlib.util.find_spec("pagerduty_sim.cli") is not None
    if use_simulator and have_sim:
        sim = f"http://127.0.0.1:{sim_port}"
        env.update(
            RRPD_PAGERDUTY_API_URL=sim,
            RRPD_PAGERDUTY_EU_API_URL=f"{sim}/eu",
            RRPD_PAGERDUTY_IDENTITY_URL=f"{sim}/identity",
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
            "worker-interactive", [*rrpd, "worker", "--queues", "interactive", "--concurrency", "2"]
        ),
        Part("worker-sync", [*rrpd, "worker", "--queues", "sync", "--concurrency", "4"]),
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
    print("  Ctrl-C stops everything.")
    supervisor = Supervisor(parts, env)
    supervisor.start()
    return supervisor.wait()

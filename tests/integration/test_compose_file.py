"""docker-compose.yml only runs real ``rrpd`` commands and sets real settings.

Docker cannot run on the development machines, so this is how the file is kept honest.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from rrpd.cli import cli
from workers.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _resolve(argv: list[str]) -> click.Command:
    ctx = click.Context(cli)
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args.pop(0))
        assert sub is not None, f"unknown rrpd command in {argv}"
        command = sub
    # Parsing the options proves each one exists and has a valid value.
    command.make_context("rrpd", args, resilient_parsing=False)
    return command


def test_every_rrpd_command_is_real() -> None:
    rrpd_commands = 0
    for name, service in SERVICES.items():
        command = service.get("command")
        if not command or command[0] != "rrpd":
            assert "image" in service, name
            assert "rrpd" not in str(service.get("image")), name
            continue
        rrpd_commands += 1
        _resolve(command[1:])
    assert rrpd_commands >= 7


def test_expected_services_with_health_checks() -> None:
    for name in (
        "redis",
        "postgres",
        "api",
        "worker-interactive",
        "worker-sync",
        "beat",
        "flower",
        "pagerduty-sim",
    ):
        assert name in SERVICES, name
    for name in ("redis", "postgres", "api", "worker-interactive", "worker-sync", "flower"):
        assert "healthcheck" in SERVICES[name], f"{name} has no health check"


def test_workers_consume_one_queue_each() -> None:
    assert "interactive" in SERVICES["worker-interactive"]["command"]
    assert "sync" in SERVICES["worker-sync"]["command"]
    assert "schedule" in SERVICES["worker-schedule"]["command"]


def test_redis_keeps_queues_safe() -> None:
    cmd = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in cmd
    assert "--maxmemory-policy noeviction" in cmd


def test_every_variable_is_a_real_setting() -> None:
    known = {f"RRPD_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for service in SERVICES.values():
        env = service.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        for var in names:
            if var.startswith("RRPD_"):
                seen.add(var)
                assert var in known, f"{var} is not a setting"
    assert {"RRPD_DATABASE_URL", "RRPD_ENCRYPTION_KEYS", "RRPD_API_JWT_SECRET"} <= seen


DEV_COMMANDS = {"run", "demo", "pagerduty-sim"}


def test_only_the_dev_image_runs_development_tools() -> None:
    for name, service in SERVICES.items():
        command = service.get("command")
        if not command or command[0] != "rrpd":
            continue
        wanted = "dev" if command[1] in DEV_COMMANDS else "production"
        assert service["build"]["target"] == wanted, name


def test_the_production_image_ships_no_development_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line.split()[-1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages[-1] == "production"  # the default target
    production = dockerfile.split("FROM base AS production", 1)[1]
    assert "rm -rf rrpd/dev pagerduty_sim" in production
    assert production.index("rm -rf") < production.index("pip install")

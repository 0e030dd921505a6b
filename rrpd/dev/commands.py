"""Development commands: ``rrpd run`` (the whole local stack) and ``rrpd pagerduty-sim``."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from rrpd.common import checked_settings
from rrpd.dev.clock import at_option, pin_clock


@click.command("run")
@click.option("--api-port", default=8000, show_default=True, type=int)
@click.option("--flower-port", default=5555, show_default=True, type=int)
@click.option("--sim-port", default=8090, show_default=True, type=int)
@click.option(
    "--pagerduty",
    type=click.Choice(["sim", "real"]),
    default="sim",
    show_default=True,
    help="Talk to the bundled PagerDuty simulator (demo scenario) or to the configured URLs.",
)
@at_option
def run(
    api_port: int, flower_port: int, sim_port: int, pagerduty: str, at: datetime | None
) -> None:
    """Run the whole local stack in the foreground; Ctrl-C stops every process."""
    from rrpd.dev.localstack import run_local_stack

    checked_settings()
    pin_clock(at)
    sys.exit(
        run_local_stack(
            api_port=api_port,
            flower_port=flower_port,
            sim_port=sim_port,
            use_simulator=pagerduty == "sim",
        )
    )


@click.command("pagerduty-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--scenario",
    default="demo",
    show_default=True,
    help="Built-in scenario name or a JSON/YAML scenario file.",
)
@click.option("--rate-limit", type=int, default=None, help="Requests per minute per credential.")
@click.option("--auto-approve", is_flag=True, help="Approve OAuth consent without a click.")
@click.option("--latency-ms", type=int, default=None, help="Latency added to every request.")
def pagerduty_sim(
    host: str,
    port: int,
    scenario: str,
    rate_limit: int | None,
    auto_approve: bool,
    latency_ms: int | None,
) -> None:
    """Start the PagerDuty simulator (REST, OAuth identity, /_sim control API)."""
    from pagerduty_sim.cli import main as sim_main

    argv = ["--host", host, "--port", str(port), "--scenario", scenario]
    if rate_limit is not None:
        argv += ["--rate-limit", str(rate_limit)]
    if auto_approve:
        argv.append("--auto-approve")
    if latency_ms is not None:
        argv += ["--latency-ms", str(latency_ms)]
    sim_main(argv)

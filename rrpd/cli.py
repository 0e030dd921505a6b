"""``rrpd``: the operator's entry point. Each server command starts the real process.

The commands live in modules of their own (``rrpd.processes``, ``rrpd.maintenance``,
``rrpd.manage``, ``rrpd.ops``, ``rrpd.records``) and share ``rrpd.common``; the development tools
(``rrpd.dev``) are added when installed (not in the production image).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from rrpd import leases, maintenance, manage, ops, processes, records
from rrpd.common import CONFIG_EXIT_CODE, echo_configuration_error
from workers.core.settings import ConfigurationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """rr-pagerduty: connect Round Robin workspaces to PagerDuty.

    Configuration comes from RRPD_* environment variables (see the README).
    """


for command in (
    maintenance.db,
    maintenance.keys,
    processes.worker,
    processes.beat,
    processes.flower,
    processes.api,
    *manage.COMMANDS,
    *ops.COMMANDS,
    *records.COMMANDS,
    *leases.COMMANDS,
):
    cli.add_command(command)

try:
    from rrpd.dev import commands as dev_commands
except ModuleNotFoundError as exc:
    # The production image ships no development tools: no run, demo or pagerduty-sim command.
    if exc.name != "rrpd.dev":
        raise
else:
    for command in dev_commands():
        cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rrpd")
    except ConfigurationError as exc:
        # A command that reads settings without checked_settings (e.g. through an import).
        echo_configuration_error(exc)
        sys.exit(CONFIG_EXIT_CODE)


if __name__ == "__main__":
    main()

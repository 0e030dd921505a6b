"""Development tools: the local stack (``rrpd run``), the demo walkthroughs (``rrpd demo``),
the demo seed and the simulator command (``rrpd pagerduty-sim``).

Not shipped in the production image (the Dockerfile removes this package and ``pagerduty_sim``
before installing): ``rrpd.cli`` adds these commands only when this package is importable, so a
production ``rrpd`` simply has no ``run``, ``demo`` or ``pagerduty-sim`` command.
"""

from __future__ import annotations

import click


def commands() -> list[click.Command]:
    from rrpd.dev.commands import pagerduty_sim, run
    from rrpd.dev.demo import demo

    return [run, pagerduty_sim, demo]

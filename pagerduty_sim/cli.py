"""Command line: `python -m pagerduty_sim [--port 8090] [--scenario demo] ...`."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .app import SimApp
from .scenario import ScenarioError
from .server import bind_socket, url_for, uvicorn_config
from .state import DEFAULT_ONCALLS_RATE_LIMIT, DEFAULT_RATE_LIMIT, SimState


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pagerduty-sim", description="PagerDuty API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--scenario", default="demo", help="built-in name (demo) or a .yaml/.json file")
    p.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT,
        help="requests per minute per credential (default 960)",
    )
    p.add_argument(
        "--oncalls-rate-limit",
        type=int,
        default=DEFAULT_ONCALLS_RATE_LIMIT,
        help="extra GET /oncalls limit per credential and minute "
        f"(default {DEFAULT_ONCALLS_RATE_LIMIT}; PagerDuty does not publish its number)",
    )
    p.add_argument(
        "--auto-approve",
        action="store_true",
        help="OAuth authorize redirects at once instead of showing the consent page",
    )
    p.add_argument("--latency-ms", type=int, default=0, help="added latency for every API request")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        state = SimState(
            args.scenario,
            rate_limit_per_minute=args.rate_limit,
            oncalls_rate_limit_per_minute=args.oncalls_rate_limit,
            auto_approve=args.auto_approve,
            latency_ms=args.latency_ms,
        )
    except ScenarioError as exc:
        print(f"pagerduty-sim: bad scenario: {exc}", file=sys.stderr)
        return 2
    sock = bind_socket(args.host, args.port)
    base = url_for(args.host, sock.getsockname()[1])
    print(
        f"PagerDuty simulator (scenario {state.scenario.name!r})\n"
        f"  REST API (US):  {base}\n"
        f"  REST API (EU):  {base}/eu\n"
        f"  Identity:       {base}/identity\n"
        f"  Consent page:   {base}/identity/oauth/authorize"
        f"{'  (auto-approve ON)' if args.auto_approve else ''}\n"
        f"  JWKS:           {base}/identity/global/oauth/anonymous/jwks\n"
        f"  Control API:    {base}/_sim  (credentials: {base}/_sim/credentials)",
        flush=True,
    )
    server = uvicorn.Server(uvicorn_config(SimApp(state), args.log_level))
    server.run(sockets=[sock])
    return 0

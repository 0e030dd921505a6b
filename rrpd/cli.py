"""``rrpd``: the operator's entry point. Each server command starts the real process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

import click

from workers.core.settings import ConfigurationError, Settings, get_settings
from workers.core.startup import check_configuration
from workers.tasking.contract import QUEUES

CONFIG_EXIT_CODE = 2


def echo_configuration_error(exc: ConfigurationError, file: IO[Any] | None = None) -> None:
    """One line per problem, each naming the variable to fix; never a traceback."""
    for line in str(exc).splitlines() or ["invalid configuration"]:
        click.echo(f"configuration error: {line}", file=file, err=file is None)


class ConfigurationProblem(click.ClickException):
    """A configuration error shown the same way by every command (exit status 2)."""

    exit_code = CONFIG_EXIT_CODE

    def __init__(self, exc: ConfigurationError) -> None:
        super().__init__(str(exc))
        self.error = exc

    def show(self, file: IO[Any] | None = None) -> None:
        echo_configuration_error(self.error, file)


def _checked_settings() -> Settings:
    try:
        settings = get_settings()
        check_configuration(settings)
    except ConfigurationError as exc:
        raise ConfigurationProblem(exc) from None
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """rr-pagerduty: connect Round Robin workspaces to PagerDuty.

    Configuration comes from RRPD_* environment variables (see the README).
    """


# --- database ----------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to the configured database."""
    from workers.core.migrate import upgrade

    settings = _checked_settings()
    upgrade(settings.effective_database_url, revision)
    click.echo(f"database at revision {revision}: {_safe_url(settings.effective_database_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- processes ---------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--queues",
    "-Q",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes/threads.")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option("--hostname", "-n", default=None, help="Node name (default: rrpd-<queues>@%h).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(
    queues: str, concurrency: int | None, pool: str, hostname: str | None, loglevel: str
) -> None:
    """Start a Celery worker consuming every queue unless --queues narrows it."""
    _checked_settings()
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown:
        raise click.ClickException(f"unknown queue(s): {', '.join(unknown)}; known: {QUEUES}")
    from workers.core.logging import configure_logging
    from workers.tasking.app import app

    configure_logging()
    argv = ["worker", "-Q", ",".join(wanted), "-P", pool, "-l", loglevel, "-E"]
    argv += ["-n", hostname or f"rrpd-{'-'.join(wanted)}@%h"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    app.worker_main(argv)


@cli.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Start celery beat with RedBeat (several beat processes are safe: one holds the lock)."""
    _checked_settings()
    from workers.core.logging import configure_logging
    from workers.tasking.app import app

    configure_logging()
    app.start(["beat", "-S", "redbeat.RedBeatScheduler", "-l", loglevel])


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True, type=int)
@click.option(
    "--read-only", is_flag=True, help="Disable Flower's controls (revoke, shutdown, send task)."
)
def flower(host: str, port: int, read_only: bool) -> None:
    """Start Flower: basic auth from RRPD_FLOWER_BASIC_AUTH, Prometheus metrics at /metrics.

    Queue lengths (the Broker tab, /api/queues/length) are read from Redis directly, with our
    key prefix; --broker-api is only for RabbitMQ. /metrics takes the same basic auth.
    """
    import os

    settings = _checked_settings()
    from rrpd.ops import prepare_flower
    from workers.tasking.app import app

    auth = settings.flower_basic_auth.get_secret_value()
    if settings.is_production and auth in ("", "admin:admin"):
        raise click.ClickException(
            "RRPD_FLOWER_BASIC_AUTH is empty or the default admin:admin; production Flower "
            "needs a real user:password"
        )
    prepare_flower()
    argv = ["flower", f"--address={host}", f"--port={port}", "--persistent=False"]
    if read_only:
        argv.append("--read_only=True")
    # Through the environment, not argv: a command line is readable by every local user (ps).
    os.environ.pop("FLOWER_BASIC_AUTH", None)
    if auth:
        os.environ["FLOWER_BASIC_AUTH"] = auth
    app.start(argv)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "num_workers", default=1, show_default=True, type=int)
def api(host: str, port: int, num_workers: int) -> None:
    """Start the HTTP API (uvicorn)."""
    settings = _checked_settings()
    import uvicorn

    from workers.core.logging import configure_logging

    configure_logging()
    uvicorn.run(
        "api_stub.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=num_workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        # h11, not httptools: httptools reads a header block of any size (see api_stub.server).
        http="api_stub.server:BoundedH11Protocol",
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
    )


@cli.command("run")
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
def run(api_port: int, flower_port: int, sim_port: int, pagerduty: str) -> None:
    """Run the whole local stack in the foreground; Ctrl-C stops every process."""
    from rrpd.localstack import run_local_stack

    _checked_settings()
    sys.exit(
        run_local_stack(
            api_port=api_port,
            flower_port=flower_port,
            sim_port=sim_port,
            use_simulator=pagerduty == "sim",
        )
    )


@cli.command("pagerduty-sim")
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


# --- keys --------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Encryption keys for stored secrets."""


@keys.command("generate")
@click.option("--id", "key_id", default="k1", show_default=True, help="Key id to prefix.")
def keys_generate(key_id: str) -> None:
    """Print a new key as KEY_ID=KEY, ready to put first in RRPD_ENCRYPTION_KEYS."""
    from workers.core.crypto import generate_key

    click.echo(f"{key_id}={generate_key()}")


@keys.command("rotate")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret with the first (primary) key. Safe while workers run.

    First checks that every stored secret decrypts with RRPD_ENCRYPTION_KEYS (nothing is
    written otherwise), and checks again afterwards.
    """
    _checked_settings()
    from workers.core.crypto import get_keyring
    from workers.core.keyrotation import RotationRefused, rotate_all

    keyring = get_keyring()
    ids = ", ".join(key_id for key_id, _ in keyring.keys)
    click.echo(f"checking that every stored secret decrypts with the configured keys ({ids})")

    def progress(column: str, scanned: int, rotated: int) -> None:
        click.echo(f"  {column}: {scanned} scanned, {rotated} re-encrypted so far")

    try:
        report = rotate_all(batch_size=batch_size, keyring=keyring, progress=progress)
    except RotationRefused as refused:
        for line in refused.report.problem_lines():
            click.echo(f"  {line}", err=True)
        raise click.ClickException(
            f"refused: {refused.report.failed} of {refused.report.scanned} stored secrets do not "
            "decrypt with RRPD_ENCRYPTION_KEYS; nothing was re-encrypted"
        ) from None
    assert report.before is not None and report.after is not None
    click.echo(f"  ok: {report.before.scanned} secrets decrypt ({_by_key(report.before.by_key)})")
    click.echo(f"re-encrypted with primary key {keyring.primary_id!r}")
    click.echo(
        f"done: {report.scanned} secrets scanned, {report.rotated} re-encrypted, "
        f"{report.skipped_concurrent} changed concurrently (already current)"
    )
    after = report.after
    if not after.ok:
        for line in after.problem_lines():
            click.echo(f"  {line}", err=True)
        raise click.ClickException(
            f"after re-encrypting, {after.failed} of {after.scanned} stored secrets do not "
            "decrypt with RRPD_ENCRYPTION_KEYS (written meanwhile by a process with other keys?)"
        )
    old = after.scanned - after.by_key[keyring.primary_id]
    click.echo(
        f"verified: all {after.scanned} stored secrets decrypt ({_by_key(after.by_key)})"
        + (f"; {old} still on older keys, run again" if old else "")
    )


def _by_key(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none stored"

from rrpd.manage import register; register(cli)  # noqa: E402, E702, I001
from rrpd.demo import demo as _demo; cli.add_command(_demo)  # noqa: E402, E702, I001
from rrpd.ops import register as register_ops; register_ops(cli)  # noqa: E402, E702, I001
from rrpd.records import register as register_records; register_records(cli)  # noqa: E402, E702, I001

def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rrpd")
    except ConfigurationError as exc:
        # A command that reads settings without _checked_settings (e.g. through an import).
        echo_configuration_error(exc)
        sys.exit(CONFIG_EXIT_CODE)


if __name__ == "__main__":
    main()

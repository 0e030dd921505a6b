"""The server processes: ``rrpd worker``, ``rrpd beat``, ``rrpd flower``, ``rrpd api``.

Each checks the configuration first (exit 2 with one line per problem), then starts the real
process in the foreground.
"""

from __future__ import annotations

import os

import click

from rrpd.common import checked_settings
from workers.tasking.contract import QUEUES


@click.command()
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
    if pool == "threads" and concurrency and "RRPD_DB_POOL_SIZE" not in os.environ:
        # One database connection per thread (plus the background loops'), or threads queue
        # for the pool's 5 + 5 connections.
        os.environ["RRPD_DB_POOL_SIZE"] = str(concurrency + 4)
        from workers.core.settings import reset_settings_cache

        reset_settings_cache()
    checked_settings()
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


@click.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Start celery beat with RedBeat (several beat processes are safe: one holds the lock).

    Beat rides out Redis outages by itself: its scheduler is started again after a Redis error
    (workers.tasking.supervision), with pauses up to RRPD_REDIS_RETRY_MAX_SECONDS.
    """
    settings = checked_settings()
    from workers.core.logging import configure_logging
    from workers.tasking.app import app
    from workers.tasking.supervision import run_beat

    configure_logging()
    run_beat(app, loglevel=loglevel, retry_max_seconds=settings.redis_retry_max_seconds)


@click.command()
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

    settings = checked_settings()
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "num_workers", default=1, show_default=True, type=int)
def api(host: str, port: int, num_workers: int) -> None:
    """Start the HTTP API (uvicorn)."""
    settings = checked_settings()
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


# --- Flower -------------------------------------------------------------------------------------


def prepare_flower() -> None:
    """Make Flower's ``/metrics`` take the same basic auth as its UI and API.

    Upstream Flower serves ``/metrics`` to anyone even with ``--basic_auth`` set. It holds no
    secret (task names, counts, worker names), but every other endpoint asks for the operators'
    credential, and Prometheus can send it (``basic_auth`` in the scrape config).
    ``/healthcheck`` stays open for load balancers.
    """
    import tornado.web
    from flower import urls
    from flower.views import monitor

    class AuthenticatedMetrics(monitor.Metrics):  # type: ignore[misc]  # Flower is untyped
        _rrpd_authenticated = True

        @tornado.web.authenticated
        async def get(self) -> None:
            await super().get()

    replaced = 0
    for i, handler in enumerate(urls.handlers):
        if isinstance(handler, tuple) and handler[0] == r"/metrics":
            if getattr(handler[1], "_rrpd_authenticated", False):
                return
            urls.handlers[i] = (handler[0], AuthenticatedMetrics, *handler[2:])
            replaced += 1
    if replaced != 1:
        raise RuntimeError("Flower's /metrics route was not found; check the Flower version")

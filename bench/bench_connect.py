"""Benchmark: OAuth connect latency behind a sync backlog, and the API's connect/status throughput.

Everything runs as real processes, as in production: the PagerDuty simulator (a subprocess,
demo scenario, consent auto-approved), ``rrpd api``, one ``rrpd worker --queues interactive`` and
one ``rrpd worker --queues sync``, on a fresh PostgreSQL database and a Redis key prefix of
their own. Prints two tables and writes ``bench/results/bench_connect.json``:

1. **OAuth code exchange latency** — from the moment the browser's callback request is sent to
   the API (t0) to the first status poll that reads ``connected`` (t1) — for N sequential
   logins with an empty ``sync`` queue (baseline), then for N logins while 5,000
   ``pagerduty.sync_connection`` messages wait in the ``sync`` queue. The backlog is made of
   real API-key connections (status ``connected``, the simulator's ``demo-readonly`` key), so
   the sync worker does real work (PagerDuty reads + mirror writes) all the while. Also: how
   fast the sync worker drains, hence how long a code would wait if the exchange shared the
   ``sync`` queue (an estimate from the measured drain rate, not a measured wait).
2. **API throughput on loopback** — ``GET /v1/workspaces/{id}/pagerduty`` (status) and
   ``PUT .../pagerduty/api-key`` (connect) with a valid JWT, httpx async clients with bounded
   concurrency, a fixed number of requests: req/s, p50, p99. ``rrpd api --workers 1`` then
   ``--workers 2`` (full run; ``--api-workers`` chooses).

This is a script that prints figures, not a test. See bench/README.md.

    .venv/bin/python bench/bench_connect.py            # full run, ~5-8 minutes
    .venv/bin/python bench/bench_connect.py --quick    # smaller everything, ~1-2 minutes

Clean-up (processes, database, Redis keys) runs on success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "bench" / "results"
RESULTS = RESULTS_DIR / "bench_connect.json"
LOG_DIR = RESULTS_DIR / "logs"
PG_ADMIN_URL = os.environ.get("RRPD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("RRPD_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
CODE_LIFETIME_SECONDS = 30  # PagerDuty's authorization code


def say(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- environment: set before any project module reads its settings -----------------------------

RUN_ID = secrets.token_hex(4)
DB_NAME = f"rrpd_bench_{RUN_ID}"
DB_URL = f"{PG_ADMIN_URL.rstrip('/')}/{DB_NAME}"
PREFIX = f"rrpdbench-{RUN_ID}"
API_PORT = free_port()
VAR_DIR = Path(tempfile.gettempdir()) / f"rrpd-bench-{RUN_ID}"


def _bench_env() -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "RRPD_ENV": "test",
        # Every process must agree on it: it is the OAuth redirect URI, compared exactly by
        # PagerDuty (here the simulator) at the code exchange.
        "RRPD_PUBLIC_URL": f"http://127.0.0.1:{API_PORT}",
        "RRPD_DATABASE_URL": DB_URL,
        "RRPD_BROKER_URL": f"{REDIS_URL}/0",
        "RRPD_RESULT_BACKEND": f"{REDIS_URL}/1",
        "RRPD_REDBEAT_URL": f"{REDIS_URL}/0",
        "RRPD_REDIS_KEY_PREFIX": PREFIX,
        "RRPD_ENCRYPTION_KEYS": f"bench1={Fernet.generate_key().decode()}",
        "RRPD_API_JWT_SECRET": f"bench-jwt-{secrets.token_hex(16)}",
        "RRPD_VAR_DIR": str(VAR_DIR),
        "RRPD_LOG_FORMAT": "json",
    }


os.environ.update(_bench_env())
VAR_DIR.mkdir(parents=True, exist_ok=True)

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from pagerduty_sim.server import SimulatorHandle, start_simulator  # noqa: E402
from workers.core.settings import reset_settings_cache  # noqa: E402

reset_settings_cache()


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (with 50 samples, p99 is the largest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict[str, float | int]:
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "min_ms": round(min(ms), 1),
    }


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


def stop_proc(proc: Proc, timeout: float = 15) -> None:
    """SIGTERM the process group we started (its own session), SIGKILL if it lingers."""
    if proc.popen.poll() is not None:
        return
    try:
        os.killpg(proc.popen.pid, signal.SIGTERM)
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
    except ProcessLookupError:
        pass


@contextmanager
def rrpd(name: str, *args: str, env: dict[str, str]) -> Iterator[Proc]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{RUN_ID}-{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "rrpd", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path)
        try:
            yield proc
        finally:
            stop_proc(proc)


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start; see {proc.log_path}")
        time.sleep(0.1)


def wait_worker(app: Any, proc: Proc, queue: str, timeout: float = 90) -> None:
    """A ping task round-trips through ``queue``: the worker consumes it."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        result = app.send_task("rrpd.ping", kwargs={"payload": "ready"}, queue=queue)
        with suppress(Exception):
            if result.get(timeout=5) == {"reply": "ready"}:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.name} did not answer on {queue}; see {proc.log_path}")


# --- database and Redis -------------------------------------------------------------------------


def admin_execute(sql: str) -> None:
    url = f"{PG_ADMIN_URL.rstrip('/')}/postgres".replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@contextmanager
def bench_database() -> Iterator[str]:
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade

    admin_execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        upgrade(DB_URL)
        yield DB_URL
    finally:
        dispose_engines()
        admin_execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        say(f"dropped database {DB_NAME}")


@contextmanager
def redis_namespace() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{REDIS_URL}/0")
    try:
        yield client
    finally:
        deleted = 0
        for db in (0, 1):
            c = redis.Redis.from_url(f"{REDIS_URL}/{db}")
            for key in c.scan_iter(f"{PREFIX}*", count=1000):
                deleted += c.delete(key)
            c.close()
        client.close()
        say(f"deleted {deleted} Redis keys with prefix {PREFIX}")


def queue_len(r: redis.Redis, queue: str) -> int:
    # kombu's Redis transport: a list named "<global_keyprefix><queue>" (priority 0).
    return int(r.llen(f"{PREFIX}:{queue}"))


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Admin:
    workspace_id: str
    headers: dict[str, str]


def make_admins(n: int) -> list[Admin]:
    """Workspaces, each with a Primary Owner and that member's token (tests.support.factories)."""
    from api_stub.auth import issue_token
    from models import Role
    from tests.support import factories
    from workers.core.db import session_factory

    admins = []
    with session_factory(DB_URL)() as session:
        pairs = []
        for i in range(n):
            ws = factories.workspace(session, f"Bench login {i}")
            person = factories.member(
                session, ws, email=f"owner{i}@bench.example", role=Role.PRIMARY_OWNER
            )
            pairs.append((ws.id, person.id))
        session.commit()
    for ws_id, member_id in pairs:
        token = issue_token(ws_id, member_id, Role.PRIMARY_OWNER, ttl_seconds=6 * 3600)
        admins.append(Admin(str(ws_id), {"Authorization": f"Bearer {token}"}))
    return admins


def make_backlog_connections(n: int, api_key: str) -> list[str]:
    """n workspaces, each with an API-key connection in status ``connected`` on the demo key.

    The same rows ``tests.support.factories.api_key_connection`` builds, inserted in two flushes.
    """
    from models import AuthMethod, ConnectionStatus, PagerDutyConnection, Workspace, utcnow
    from workers.core.db import session_factory

    ids = []
    with session_factory(DB_URL)() as session:
        workspaces = [Workspace(id=uuid.uuid4(), name=f"Bench backlog {i}") for i in range(n)]
        session.add_all(workspaces)
        session.flush()  # no ORM relationship orders the inserts: workspaces first
        for ws in workspaces:
            conn = PagerDutyConnection(
                id=uuid.uuid4(),
                workspace_id=ws.id,
                auth_method=AuthMethod.API_KEY,
                region="us",
                status=ConnectionStatus.CONNECTED,
                api_key=api_key,
                connected_at=utcnow(),
            )
            session.add(conn)
            ids.append(str(conn.id))
        session.commit()
    return ids


def sync_run_counts(since: datetime) -> dict[str, int]:
    from models import SyncRun
    from workers.core.db import session_factory

    with session_factory(DB_URL)() as session:
        rows = session.execute(
            select(SyncRun.status, func.count())
            .where(SyncRun.started_at >= since)
            .group_by(SyncRun.status)
        ).all()
    return dict(rows)


# --- part 1: OAuth logins -----------------------------------------------------------------------


@dataclass
class Login:
    ok: bool
    seconds: float | None  # t1 - t0
    callback_ms: float | None  # the callback request alone
    polls: int = 0
    outcome: str = ""


def oauth_login(
    api: httpx.Client,
    browser: httpx.Client,
    api_url: str,
    admin: Admin,
    oauth_app: dict[str, str],
    poll_interval: float,
    timeout: float = 90,
) -> Login:
    start = api.post(
        f"{api_url}/v1/workspaces/{admin.workspace_id}/pagerduty/oauth",
        json={
            "client_id": oauth_app["client_id"],
            "client_secret": oauth_app["client_secret"],
            "region": "us",
        },
        headers=admin.headers,
    )
    if start.status_code != 201:
        return Login(False, None, None, outcome=f"start {start.status_code}: {start.text[:200]}")
    # The simulator auto-approves: its authorize endpoint redirects straight back with a code.
    consent = browser.get(start.json()["authorization_url"])
    if consent.status_code not in (302, 303):
        return Login(False, None, None, outcome=f"authorize {consent.status_code}")
    callback = consent.headers["location"]
    if "code=" not in callback:
        return Login(False, None, None, outcome=f"no code: {callback[:200]}")
    t0 = time.perf_counter()
    landing = api.get(callback)
    callback_ms = (time.perf_counter() - t0) * 1000
    query = parse_qs(urlsplit(landing.headers.get("location", "")).query)
    if landing.status_code != 303 or query.get("pagerduty") != ["connecting"]:
        return Login(False, None, callback_ms, outcome=f"callback {landing.status_code} {query}")
    status_url = f"{api_url}/v1/workspaces/{admin.workspace_id}/pagerduty"
    polls = 0
    while True:
        body = api.get(status_url, headers=admin.headers).json()
        polls += 1
        t1 = time.perf_counter()
        if body["status"] == "connected":
            return Login(True, t1 - t0, callback_ms, polls, "connected")
        if body["status"] != "validating":
            return Login(False, None, callback_ms, polls, f"{body['status']}: {body['last_error']}")
        if t1 - t0 > timeout:
            return Login(False, None, callback_ms, polls, "timeout")
        time.sleep(poll_interval)


def run_logins(
    label: str,
    api_url: str,
    admins: list[Admin],
    oauth_app: dict[str, str],
    poll_interval: float,
    on_each: Callable[[int], None] | None = None,
) -> list[Login]:
    results = []
    with (
        httpx.Client(timeout=30, follow_redirects=False) as api,
        httpx.Client(timeout=30, follow_redirects=False) as browser,
    ):
        for i, admin in enumerate(admins):
            login = oauth_login(api, browser, api_url, admin, oauth_app, poll_interval)
            results.append(login)
            if not login.ok:
                say(f"  {label} login {i}: FAILED ({login.outcome})")
            if on_each:
                on_each(i)
    return results


# --- part 2: API throughput ---------------------------------------------------------------------


@dataclass
class LoadResult:
    endpoint: str
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float] = field(repr=False)
    statuses: dict[int, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "req_per_s": round(self.requests / self.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            **summary_ms(self.latencies),
        }


async def _load(
    api_url: str,
    make_request: Callable[[httpx.AsyncClient, int, int], Any],
    total: int,
    concurrency: int,
    warmup: int,
) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:

        async def worker(slot: int, count: int, record: bool) -> None:
            for i in range(count):
                t = time.perf_counter()
                resp = await make_request(client, slot, i)
                if record:
                    latencies.append(time.perf_counter() - t)
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        # Warm up: connections open, the API's pools and caches filled.
        await asyncio.gather(*(worker(s, warmup, False) for s in range(concurrency)))
        shares = [
            total // concurrency + (1 if s < total % concurrency else 0) for s in range(concurrency)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(worker(s, shares[s], True) for s in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, statuses


def load_status(api_url: str, admins: list[Admin], total: int, concurrency: int) -> LoadResult:
    async def request(client: httpx.AsyncClient, slot: int, i: int) -> httpx.Response:
        admin = admins[(slot + i) % len(admins)]
        return await client.get(
            f"/v1/workspaces/{admin.workspace_id}/pagerduty", headers=admin.headers
        )

    elapsed, lat, statuses = asyncio.run(_load(api_url, request, total, concurrency, 5))
    return LoadResult(
        "GET /v1/workspaces/{id}/pagerduty", total, concurrency, elapsed, lat, statuses
    )


def load_put_key(
    api_url: str, admins: list[Admin], api_key: str, total: int, concurrency: int
) -> LoadResult:
    """One workspace per client slot: a slot's PUTs replace its own connection's key (each
    enqueues a validate_api_key the interactive worker runs meanwhile)."""

    async def request(client: httpx.AsyncClient, slot: int, i: int) -> httpx.Response:
        admin = admins[slot % len(admins)]
        return await client.put(
            f"/v1/workspaces/{admin.workspace_id}/pagerduty/api-key",
            json={"api_key": api_key, "region": "us"},
            headers=admin.headers,
        )

    elapsed, lat, statuses = asyncio.run(_load(api_url, request, total, concurrency, 2))
    return LoadResult(
        "PUT /v1/workspaces/{id}/pagerduty/api-key", total, concurrency, elapsed, lat, statuses
    )


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    logins: int
    backlog: int
    warmup_logins: int
    poll_interval: float
    interactive_concurrency: int
    sync_concurrency: int
    status_requests: int
    put_requests: int
    client_concurrency: int
    api_workers: list[int]
    probe_timeout: float


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer logins/requests, smaller backlog")
    p.add_argument("--logins", type=int, help="OAuth logins per phase (default 50; quick 10)")
    p.add_argument("--backlog", type=int, help="sync messages queued (default 5000; quick 1000)")
    p.add_argument(
        "--poll-interval-ms",
        type=float,
        default=20.0,
        help="status poll interval while waiting for 'connected' (default 20)",
    )
    p.add_argument("--interactive-concurrency", type=int, default=2)
    p.add_argument(
        "--sync-concurrency",
        type=int,
        default=1,
        help="small, so the backlog stays while the logins run (default 1)",
    )
    p.add_argument("--status-requests", type=int, help="GET status requests (default 3000)")
    p.add_argument("--put-requests", type=int, help="PUT api-key requests (default 1000)")
    p.add_argument("--client-concurrency", type=int, default=8)
    p.add_argument(
        "--api-workers",
        default=None,
        help="comma-separated `rrpd api --workers` values (default 1,2; quick 1)",
    )
    p.add_argument(
        "--probe-timeout",
        type=float,
        default=600.0,
        help="cap on the shared-queue probe (a ping behind the backlog); 0 skips it",
    )
    a = p.parse_args(argv)
    q = a.quick
    workers = a.api_workers or ("1" if q else "1,2")
    return Config(
        quick=q,
        logins=a.logins or (10 if q else 50),
        backlog=a.backlog if a.backlog is not None else (1000 if q else 5000),
        warmup_logins=2,
        poll_interval=a.poll_interval_ms / 1000,
        interactive_concurrency=a.interactive_concurrency,
        sync_concurrency=a.sync_concurrency,
        status_requests=a.status_requests or (400 if q else 3000),
        put_requests=a.put_requests or (150 if q else 1000),
        client_concurrency=a.client_concurrency,
        api_workers=[int(w) for w in workers.split(",") if w.strip()],
        probe_timeout=a.probe_timeout,
    )


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds every `with`: processes, Redis keys, database


def credential(sim: SimulatorHandle, kind: str, label: str) -> dict[str, str]:
    for item in sim.credentials()[kind]:
        if item["label"] == label:
            return item
    raise KeyError(label)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    say(
        f"bench_connect run {RUN_ID}: database {DB_NAME}, Redis prefix {PREFIX}, "
        f"logs in {LOG_DIR.relative_to(ROOT)}/{RUN_ID}-*.log"
    )
    say(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    results: dict[str, Any] = {
        "run_id": RUN_ID,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "config": cfg.__dict__,
    }
    with ExitStack() as stack:
        t_setup = time.perf_counter()
        stack.enter_context(bench_database())
        r = stack.enter_context(redis_namespace())
        sim = stack.enter_context(
            start_simulator("demo", in_thread=False, auto_approve=True, log_level="warning")
        )
        # 5,000 connections share the demo key: lift the simulator's per-key rate limit so syncs
        # are not turned into 429 retries (which would leave the queue as delayed messages).
        sim.control.post("/rate_limit", json={"enabled": False}).raise_for_status()
        sim_env = {
            "RRPD_PAGERDUTY_API_URL": sim.base_url,
            "RRPD_PAGERDUTY_EU_API_URL": sim.eu_base_url,
            "RRPD_PAGERDUTY_IDENTITY_URL": sim.identity_url,
        }
        os.environ.update(sim_env)
        reset_settings_cache()
        api_key = credential(sim, "api_keys", "demo-readonly")["key"]
        oauth_app = credential(sim, "oauth_apps", "demo-oauth")

        from workers.tasking.app import app

        api_url = os.environ["RRPD_PUBLIC_URL"]
        api1 = stack.enter_context(
            rrpd("api-w1", "api", "--port", str(API_PORT), "--workers", "1", env=sim_env)
        )
        sync_host = f"bench-sync-{RUN_ID}@{socket.gethostname()}"
        interactive = stack.enter_context(
            rrpd(
                "worker-interactive",
                "worker",
                "--queues",
                "interactive",
                "--concurrency",
                str(cfg.interactive_concurrency),
                "--hostname",
                f"bench-interactive-{RUN_ID}@%h",
                env=sim_env,
            )
        )
        sync_worker = stack.enter_context(
            rrpd(
                "worker-sync",
                "worker",
                "--queues",
                "sync",
                "--concurrency",
                str(cfg.sync_concurrency),
                "--hostname",
                sync_host,
                env=sim_env,
            )
        )
        wait_http(f"{api_url}/healthz", api1)
        wait_worker(app, interactive, "interactive")
        wait_worker(app, sync_worker, "sync")
        n_admins = cfg.warmup_logins + 2 * cfg.logins
        admins = make_admins(n_admins + cfg.client_concurrency)
        t0 = time.perf_counter()
        backlog_ids = make_backlog_connections(cfg.backlog, api_key)
        say(
            f"set-up: {time.perf_counter() - t_setup:.1f} s (backlog rows: "
            f"{time.perf_counter() - t0:.1f} s)"
        )

        # ---- part 1a: baseline, empty sync queue -------------------------------------------
        poll = cfg.poll_interval
        warm, rest = admins[: cfg.warmup_logins], admins[cfg.warmup_logins :]
        base_admins, backlog_admins = rest[: cfg.logins], rest[cfg.logins : 2 * cfg.logins]
        put_admins = rest[2 * cfg.logins :]
        run_logins("warm-up", api_url, warm, oauth_app, poll)
        say(
            f"baseline: {cfg.logins} OAuth logins, sync queue length {queue_len(r, 'sync')} "
            "(only each login's own initial sync passes through it)"
        )
        baseline = run_logins("baseline", api_url, base_admins, oauth_app, poll)

        # ---- part 1b: the same with a sync backlog -------------------------------------------
        # Pause the sync worker's consumer while publishing, so the queue really holds them all.
        reply = app.control.cancel_consumer("sync", destination=[sync_host], reply=True, timeout=5)
        if not reply:
            raise RuntimeError("sync worker did not confirm cancel_consumer")
        time.sleep(1.0)
        t_pub = time.perf_counter()
        for cid in backlog_ids:
            app.send_task(
                "pagerduty.sync_connection", kwargs={"connection_id": cid, "kind": "scheduled"}
            )
        publish_s = time.perf_counter() - t_pub
        len_published = queue_len(r, "sync")
        say(
            f"published {cfg.backlog} pagerduty.sync_connection in {publish_s:.1f} s; "
            f"sync queue LLEN {len_published}"
        )
        sync_since = datetime.now(UTC)
        reply = app.control.add_consumer("sync", destination=[sync_host], reply=True, timeout=5)
        if not reply:
            raise RuntimeError("sync worker did not confirm add_consumer")
        time.sleep(3.0)  # the sync worker is busy again before the first login
        len_before = queue_len(r, "sync")
        t_before = time.perf_counter()
        samples: list[tuple[float, int]] = [(0.0, len_before)]
        say(f"backlog: {cfg.logins} OAuth logins, sync queue length {len_before} before")

        def sample(_: int) -> None:
            samples.append((time.perf_counter() - t_before, queue_len(r, "sync")))

        with_backlog = run_logins("backlog", api_url, backlog_admins, oauth_app, poll, sample)
        len_after = queue_len(r, "sync")
        backlog_s = time.perf_counter() - t_before
        runs = sync_run_counts(sync_since)
        drained = len_before - len_after
        # Initial syncs of the new OAuth connections land in the same queue: count them in.
        drained += sum(1 for x in with_backlog if x.ok)
        rate = drained / backlog_s if backlog_s > 0 else 0.0
        say(f"sync queue length {len_after} after ({backlog_s:.1f} s); sync runs meanwhile: {runs}")
        probe: dict[str, Any] = {"ran": False}
        if cfg.probe_timeout > 0:
            # What a code would live through if the exchange shared the sync queue: a trivial
            # task (rrpd.ping) sent to `sync` behind what is left of the backlog, timed until
            # its result arrives. Measured, not estimated (the estimate is printed too).
            probe_len = queue_len(r, "sync")
            say(
                f"shared-queue probe: rrpd.ping sent to `sync` behind {probe_len:,} messages "
                f"(waiting up to {cfg.probe_timeout:.0f} s)"
            )
            t_probe = time.perf_counter()
            pending = app.send_task("rrpd.ping", kwargs={"payload": "probe"}, queue="sync")
            try:
                pending.get(timeout=cfg.probe_timeout)
                waited: float | None = time.perf_counter() - t_probe
            except Exception:  # celery's TimeoutError: the backlog outlasted the cap
                waited = None
            probe = {
                "ran": True,
                "queue_len_at_send": probe_len,
                "wait_s": round(waited, 1) if waited is not None else None,
                "timeout_s": cfg.probe_timeout,
                "drain_per_s": round(probe_len / waited, 2) if waited else None,
            }
        # Clear the rest of the backlog before part 2 (the worker finishes what it holds).
        app.control.cancel_consumer("sync", destination=[sync_host], reply=True, timeout=5)
        r.delete(f"{PREFIX}:sync")

        base_s = [x.seconds for x in baseline if x.ok and x.seconds is not None]
        back_s = [x.seconds for x in with_backlog if x.ok and x.seconds is not None]
        base_sum, back_sum = summary_ms(base_s), summary_ms(back_s)
        cb_base = summary_ms([x.callback_ms / 1000 for x in baseline if x.callback_ms])
        cb_back = summary_ms([x.callback_ms / 1000 for x in with_backlog if x.callback_ms])
        shared_wait = len_before / rate if rate > 0 else math.inf
        part1 = {
            "measure": "t0 = callback request sent to the API; t1 = first status poll "
            f"reading 'connected' (poll every {cfg.poll_interval * 1000:.0f} ms)",
            "backlog_kind": "real pagerduty.sync_connection messages for API-key connections "
            "(connected, simulator demo key): every one does a full sync",
            "baseline": {
                **base_sum,
                "failed": sum(1 for x in baseline if not x.ok),
                "callback_request": cb_base,
                "sync_queue_len": 0,
            },
            "with_backlog": {
                **back_sum,
                "failed": sum(1 for x in with_backlog if not x.ok),
                "callback_request": cb_back,
                "sync_queue_len_published": len_published,
                "sync_queue_len_before": len_before,
                "sync_queue_len_after": len_after,
                "sync_queue_len_samples": [(round(t, 1), n) for t, n in samples],
            },
            "ratio_p50": _ratio(back_sum, base_sum, "p50_ms"),
            "ratio_p99": _ratio(back_sum, base_sum, "p99_ms"),
            "shared_queue_estimate": {
                "sync_drain_per_s": round(rate, 2),
                "sync_worker_concurrency": cfg.sync_concurrency,
                "sync_runs_during_backlog_phase": runs,
                "estimated_wait_s_behind_backlog": round(shared_wait, 1),
                "code_lifetime_s": CODE_LIFETIME_SECONDS,
                "note": "estimate: queue length / measured drain rate, not a measured wait",
                "measured_probe": probe,
            },
            "publish_seconds": round(publish_s, 2),
        }
        results["oauth_exchange"] = part1

        # ---- part 2: API throughput ----------------------------------------------------------
        part2 = []
        for n_workers in cfg.api_workers:
            if n_workers == 1:
                url = api_url
            else:
                port = free_port()
                extra = stack.enter_context(
                    rrpd(
                        f"api-w{n_workers}",
                        "api",
                        "--port",
                        str(port),
                        "--workers",
                        str(n_workers),
                        env=sim_env,
                    )
                )
                url = f"http://127.0.0.1:{port}"
                wait_http(f"{url}/healthz", extra)
            r.delete(f"{PREFIX}:interactive")  # validations left from the previous round
            say(
                f"API throughput, rrpd api --workers {n_workers}: {cfg.status_requests} GET "
                f"status, {cfg.put_requests} PUT api-key, {cfg.client_concurrency} concurrent"
            )
            status = load_status(url, base_admins, cfg.status_requests, cfg.client_concurrency)
            put = load_put_key(url, put_admins, api_key, cfg.put_requests, cfg.client_concurrency)
            part2.append({"api_workers": n_workers, "results": [status.as_dict(), put.as_dict()]})
        results["api_throughput"] = {
            "client": f"httpx.AsyncClient in the bench process, {cfg.client_concurrency} "
            "concurrent requests, keep-alive",
            "runs": part2,
        }
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print_report(results)
        say("cleaning up...")
    say(f"results: {RESULTS.relative_to(ROOT)}")
    return 0


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if key in a and key in b and b[key]:
        return round(a[key] / b[key], 2)
    return None


def print_report(res: dict[str, Any]) -> None:
    p1 = res["oauth_exchange"]
    cfg = res["config"]
    say()
    say("=" * 96)
    say(
        f"1. OAuth code exchange latency, callback -> 'connected' ({cfg['logins']} sequential "
        f"logins each; poll {cfg['poll_interval'] * 1000:.0f} ms)"
    )
    say("=" * 96)
    hdr = (
        f"{'sync queue':<34}{'n':>4}{'fail':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'callback p50':>15}"
    )
    say(hdr)
    say("-" * len(hdr))
    b, w = p1["baseline"], p1["with_backlog"]
    rows = [
        ("empty (baseline)", b),
        (f"{w['sync_queue_len_before']:,} -> {w['sync_queue_len_after']:,} waiting", w),
    ]
    for label, s in rows:
        say(
            f"{label:<34}{s.get('n', 0):>4}{s['failed']:>6}{s.get('p50_ms', 'n/a'):>9}"
            f"{s.get('p99_ms', 'n/a'):>9}{s.get('max_ms', 'n/a'):>9}"
            f"{s['callback_request'].get('p50_ms', 'n/a'):>12} ms"
        )
    say(
        f"{'ratio backlog / baseline':<34}{'':>10}{p1['ratio_p50'] or 'n/a':>9}"
        f"{p1['ratio_p99'] or 'n/a':>9}"
    )
    say(f"backlog: {p1['backlog_kind']}")
    say(
        f"published {w['sync_queue_len_published']:,} (LLEN) in {p1['publish_seconds']} s, "
        "consumer paused while publishing"
    )
    est = p1["shared_queue_estimate"]
    say(
        f"if the exchange shared the sync queue: the sync worker (concurrency "
        f"{est['sync_worker_concurrency']}) drained {est['sync_drain_per_s']}/s, so a code "
        f"queued behind {w['sync_queue_len_before']:,} would wait ~"
        f"{est['estimated_wait_s_behind_backlog']:,} s (code lives {est['code_lifetime_s']} s) "
        "[estimate]"
    )
    pr = est["measured_probe"]
    if pr["ran"]:
        wait = f"{pr['wait_s']:,} s" if pr["wait_s"] is not None else f"> {pr['timeout_s']:.0f} s"
        say(
            f"measured: an rrpd.ping sent to the sync queue behind {pr['queue_len_at_send']:,} "
            f"messages waited {wait} for its result ({pr['drain_per_s'] or 'n/a'} msg/s)"
        )
    say(f"sync runs during the backlog phase: {est['sync_runs_during_backlog_phase']}")
    say()
    say("=" * 96)
    say("2. API throughput on loopback (" + res["api_throughput"]["client"] + ")")
    say("=" * 96)
    hdr = (
        f"{'rrpd api':<12}{'endpoint':<44}{'requests':>9}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}  statuses"
    )
    say(hdr)
    say("-" * len(hdr))
    for run in res["api_throughput"]["runs"]:
        for x in run["results"]:
            say(
                f"{'--workers ' + str(run['api_workers']):<12}{x['endpoint']:<44}"
                f"{x['requests']:>9}{x['req_per_s']:>9}{x['p50_ms']:>9}{x['p99_ms']:>9}  "
                f"{x['statuses']}"
            )
    m = res["machine"]
    say()
    say(
        f"machine: {m['cpus']} CPUs, load average {m['loadavg_start'][0]} at start, "
        f"{m['loadavg_end'][0]} at end; the simulator, PostgreSQL, Redis, the API, both "
        "workers and this client share it: figures are indicative."
    )


if __name__ == "__main__":
    sys.exit(main())

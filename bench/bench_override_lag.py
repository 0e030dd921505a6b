"""Override lag: from an override made in PagerDuty to the API showing its person on duty.

    .venv/bin/python bench/bench_override_lag.py [--workspaces 20] [--window 300]
        [--interval 60] [--jitter 20] [--batch-size 50]

``--workspaces`` workspaces, each connected (API key) to its own simulated account (the
``fleet`` generator: 20 users, 5 schedules), every user a member (matched by email), one
rotation bound to the account's first v2 schedule an escalation policy uses, and a first sync
(in this process) before anything is measured. The simulator is a subprocess with 50 ms latency
per request; PostgreSQL holds a database of the run's own (dropped at the end); Redis is the
broker with a key prefix of the run's own (deleted at the end).

Real processes: ``rrpd api``, ``rrpd beat`` (sends ``pagerduty.schedule_syncs`` every
``--interval``), ``rrpd worker -Q schedule`` (the fan-out: claims what is due and publishes
``pagerduty.check_connections`` batches of ``--batch-size``) and ``rrpd worker -Q sync`` (runs
the batches; both with their background loops, handoffs included), as ``rrpd run`` starts them.
Defaults are the production ones: interval 60 s, jitter 20 s, batches of 50.

**Checks, observed.** A quiet check writes no ``sync_runs`` row: it stamps the connection's
``last_checked_at`` (the check's start). A sampler thread polls every connection's
``last_checked_at`` every ``SAMPLE_SECONDS``; each new value is one check at that instant (the
instant is the column's, so the polling adds no error; two checks of one connection are an
interval apart, never within one poll). Every other pass (an override seen: applied) is a
``sync_runs`` row, read from the database. A connection's checks are the union of both.

Two phases in the same run, on the same fleet, simulator and API:

1. **fixed**: the code as it is; a batch's countdown is its first connection's fixed place in
   ``[0, jitter)`` (``workers.sync.fanout.spread_offset``), so each check is one interval after
   the previous one;
2. **fresh draw**: the behaviour before issue 11, a fresh ``uniform(0, jitter)`` per batch per
   round (with batches, the fan-out asks ``spread_offset`` once per batch message). Production
   code is untouched: the phase's worker processes start with a bench-only ``sitecustomize.py``
   on ``PYTHONPATH`` (written to a temporary directory) that replaces ``spread_offset`` when
   ``workers.sync.fanout`` is imported, and writes each value it draws to a file (one line per
   published batch: the patch took effect). At the default batch size a 20-workspace fleet is
   one batch, so the phase has one draw per round for all of it; ``--batch-size 1`` gives each
   connection its own draw, as the single-message fan-out had.

Each phase restarts beat and the workers, sets every connection due, and waits until every
connection has been checked by the new processes (the phase's first round). Then, for
``--window`` seconds, each workspace makes overrides at random instants: the first after a
wait drawn from ``[0, --max-wait)``, each next one that long after the previous one showed
(one outstanding override per workspace). An override puts the other of two matched people on
call from now for an hour (the simulator's newest override wins). This script polls
``GET /v1/workspaces/{id}/rotations`` for every outstanding override (a sweep every
``--poll`` seconds at most); lag = first poll showing the person on duty - the instant the
override was requested. After the window no override is made, but the outstanding ones are
still waited for (dropping them would drop the longest lags).

Printed per phase: lag p50/p90/p99/max, the goal "p99 <= interval + 5 s", where the lag went
(wait for the check that showed it, that check, its commit to the poll), the gap between
checks each override fell into and any check after an override that missed it, the gaps
between each connection's consecutive checks (min/median/max), and the fan-out rounds' spacing
(from the schedule worker's log). Then the ratio of the p99s. Figures go to
``bench/results/bench_override_lag.json``.

Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 (``RRPD_BENCH_POSTGRES_URL``,
``RRPD_BENCH_REDIS_URL``). Takes about 2 x (window + 2 minutes).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.arrange import bound_workspace  # noqa: E402
from bench.processes import free_port, spawn_rrpd, stop  # noqa: E402

RUN = uuid.uuid4().hex[:6]
PG_ADMIN_URL = os.environ.get(
    "RRPD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RRPD_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DB = f"rrpd_bench_lag_{RUN}"
USERS, SCHEDULES = 20, 5
LATENCY_MS = 50
PHASES = ("fixed", "fresh draw")
SAMPLE_SECONDS = 0.5

# Loaded (through PYTHONPATH) by the fresh-draw phase's worker processes only. It patches the
# module when it is first imported, so nothing of the project is imported earlier than usual.
SITECUSTOMIZE = '''\
"""Bench-only (bench/bench_override_lag.py): the fan-out's countdown drawn afresh each round."""

import importlib.abc
import importlib.util
import os
import random
import sys
import time

_MARK = os.environ["RRPD_BENCH_SPREAD_MARK"]


def _fresh_draw(cid, jitter):
    value = random.uniform(0, jitter)
    with open(_MARK, "a") as fh:
        fh.write(f"{time.time():.3f} {cid} {value:.3f}\\n")
    return value


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "workers.sync.fanout":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.spread_offset = _fresh_draw

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Patch())
'''


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _configure(args: argparse.Namespace) -> None:
    """Before any project import: settings and Celery's config are read at import time."""
    from cryptography.fernet import Fernet

    base, _, _ = PG_ADMIN_URL.rpartition("/")
    var = Path(tempfile.gettempdir()) / f"rrpd-bench-lag-{RUN}"
    var.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        RRPD_ENV="test",
        RRPD_DATABASE_URL=f"{base}/{DB}",
        RRPD_BROKER_URL=f"{REDIS_URL}/0",
        RRPD_RESULT_BACKEND=f"{REDIS_URL}/1",
        RRPD_REDIS_KEY_PREFIX=f"rrpdbench-lag-{RUN}",
        RRPD_VAR_DIR=str(var),
        RRPD_LOG_FORMAT="json",
        RRPD_LOG_LEVEL="INFO",
        RRPD_ENCRYPTION_KEYS=f"b1={Fernet.generate_key().decode()}",
        RRPD_API_JWT_SECRET="bench-secret-" + "x" * 40,
        RRPD_API_JWT_TTL_SECONDS="86400",
        RRPD_SYNC_INTERVAL_SECONDS=str(args.interval),
        RRPD_SYNC_JITTER_SECONDS=str(args.jitter),
        RRPD_CHECK_BATCH_SIZE=str(args.batch_size),
        # PostgreSQL connections are shared with other runs on this machine: keep each
        # process's overflow small (the pools open only what is used).
        RRPD_DB_MAX_OVERFLOW="2",
    )


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)

    return {
        "n": len(ordered),
        "min_s": round(ordered[0], 3),
        "p50_s": round(statistics.median(ordered), 3),
        "p90_s": at(0.90),
        "p99_s": at(0.99),
        "max_s": round(ordered[-1], 3),
    }


def _admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _clean_redis() -> None:
    import redis

    prefix = os.environ["RRPD_REDIS_KEY_PREFIX"]
    for url in (f"{REDIS_URL}/0", f"{REDIS_URL}/1"):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _interval() -> float:
    return float(os.environ["RRPD_SYNC_INTERVAL_SECONDS"])


# --- the fleet ----------------------------------------------------------------------------------


@dataclass
class Target:
    account: str
    schedule: str
    people: tuple[tuple[str, str], tuple[str, str]]  # (PagerDuty user id, email) x 2
    ws_id: uuid.UUID
    cid: uuid.UUID
    rid: uuid.UUID
    headers: dict[str, str]
    turn: int = 0
    next_at: float = 0.0
    outstanding: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)


def arrange(scenario: Any, n: int, control: Any) -> list[Target]:
    """Workspaces, members (every user of the account, by email, and an admin), a connected
    API-key connection and one rotation bound to the account's first v2 schedule a policy uses;
    the two override people are users not on call for it now."""
    from api_stub.auth import issue_token
    from pagerduty_sim.generator import fleet_key
    from workers.core.db import transaction

    targets = []
    for i in range(n):
        aid = f"fleet-{i}"
        acct = scenario.accounts[aid]
        in_policy = {
            t.id for p in acct.escalation_policies.values() for rule in p.rules for t in rule
        }
        sid = next(
            (s.id for s in acct.schedules.values() if s.version == 2 and s.id in in_policy),
            next(iter(acct.schedules)),
        )
        now_on = set(control.get(f"/accounts/{aid}/schedules/{sid}/oncall").json()["user_ids"])
        a, b = [u for u in acct.users.values() if u.id not in now_on][:2]
        with transaction() as s:
            bound = bound_workspace(
                s,
                name=f"Lag {i}",
                api_key=fleet_key(i),
                schedule_id=sid,
                people=[(u.email, u.name) for u in acct.users.values()],
            )
            token = issue_token(bound.workspace_id, bound.admin_id, "admin")
            targets.append(
                Target(
                    account=aid,
                    schedule=sid,
                    people=((a.id, a.email.lower()), (b.id, b.email.lower())),
                    ws_id=bound.workspace_id,
                    cid=bound.connection_id,
                    rid=bound.rotation_id,
                    headers={"Authorization": f"Bearer {token}"},
                )
            )
    return targets


# --- processes ----------------------------------------------------------------------------------


def _wait_ping(queue: str, proc: subprocess.Popen[bytes], what: str) -> None:
    from workers.tasking.app import app

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see its log in {os.environ['RRPD_VAR_DIR']}")
        try:
            ping = app.send_task("rrpd.ping", kwargs={"payload": "ready"}, queue=queue)
            if ping.get(timeout=5) == {"reply": "ready"}:
                return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"{what} did not start")


def start_phase(
    tag: str, args: argparse.Namespace, patch_dir: Path | None
) -> list[subprocess.Popen[bytes]]:
    extra: dict[str, str] = {}
    if patch_dir is not None:
        extra = {
            "PYTHONPATH": os.pathsep.join(p for p in (str(patch_dir), str(ROOT)) if p),
            "RRPD_BENCH_SPREAD_MARK": str(patch_dir / "drawn.txt"),
        }
    schedule = spawn_rrpd(
        f"{tag}-worker-schedule",
        *("worker", "--queues", "schedule", "--pool", "threads", "--concurrency", "2"),
        extra_env=extra,
    )
    sync = spawn_rrpd(
        f"{tag}-worker-sync",
        *("worker", "--queues", "sync", "--pool", "threads"),
        *("--concurrency", str(args.sync_concurrency)),
        extra_env=extra,
    )
    procs = [schedule, sync]
    try:
        _wait_ping("schedule", schedule, "the schedule worker")
        _wait_ping("sync", sync, "the sync worker")
        procs.append(spawn_rrpd(f"{tag}-beat", "beat"))
    except BaseException:
        for proc in procs:
            stop(proc)
        raise
    return procs


# --- checks, as the database shows them ---------------------------------------------------------


class CheckSampler(threading.Thread):
    """Polls every connection's ``last_checked_at``: each new value is a quiet check."""

    def __init__(self) -> None:
        super().__init__(name="check-sampler", daemon=True)
        self.quiet: set[tuple[uuid.UUID, datetime]] = set()
        self.polls: list[float] = []
        self.errors = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from sqlalchemy import select

        from models import PagerDutyConnection
        from workers.core.db import transaction

        c = PagerDutyConnection
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                with transaction() as s:
                    rows = s.execute(
                        select(c.id, c.last_checked_at).where(c.last_checked_at.is_not(None))
                    ).all()
                with self._lock:
                    self.quiet.update((cid, at) for cid, at in rows if at is not None)
            except Exception:
                self.errors += 1  # counted and reported; a missed poll only delays the next
            self.polls.append(time.monotonic() - t0)
            self._halt.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def quiet_since(self, since: datetime) -> list[tuple[uuid.UUID, datetime]]:
        with self._lock:
            return sorted(q for q in self.quiet if q[1] >= since)


def make_all_due() -> None:
    from sqlalchemy import update

    from models import PagerDutyConnection
    from workers.core.db import transaction

    with transaction() as s:
        s.execute(update(PagerDutyConnection).values(next_sync_at=None))


def runs_since(since: datetime) -> list[Any]:
    from sqlalchemy import select

    from models import SyncRun
    from workers.core.db import transaction

    r = SyncRun
    with transaction() as s:
        return list(
            s.execute(
                select(r.connection_id, r.kind, r.status, r.started_at, r.finished_at)
                .add_columns(r.duration_ms, r.requests_made)
                .where(r.started_at >= since)
                .order_by(r.started_at)
            ).all()
        )


def checks_by_connection(
    sampler: CheckSampler, runs: list[Any], since: datetime
) -> dict[uuid.UUID, list[float]]:
    """Each connection's check instants (epoch s) since ``since``: quiet stamps and runs."""
    found: dict[uuid.UUID, set[float]] = {}
    for cid, at in sampler.quiet_since(since):
        found.setdefault(cid, set()).add(at.timestamp())
    for r in runs:
        found.setdefault(r.connection_id, set()).add(r.started_at.timestamp())
    return {cid: sorted(instants) for cid, instants in found.items()}


def wait_first_round(
    targets: list[Target], sampler: CheckSampler, since: datetime, timeout: float
) -> None:
    """Until every connection has been checked since ``since``: the new processes' first
    round."""
    deadline = time.monotonic() + timeout
    want = {t.cid for t in targets}
    while True:
        checked = set(checks_by_connection(sampler, runs_since(since), since))
        if want <= checked:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(want - checked)} connections had no check in {timeout:.0f} s")
        time.sleep(1)


def gaps(checks: dict[uuid.UUID, list[float]]) -> dict[str, Any]:
    """Gaps between each connection's consecutive checks."""
    values = sorted(b - a for at in checks.values() for a, b in itertools.pairwise(at))
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min_s": round(values[0], 3),
        "median_s": round(statistics.median(values), 3),
        "max_s": round(values[-1], 3),
        "stdev_s": round(statistics.pstdev(values), 3),
        "outside_interval_pm_2s": sum(1 for v in values if abs(v - _interval()) > 2),
    }


def explain(
    samples: list[dict[str, Any]], runs: list[Any], checks: dict[uuid.UUID, list[float]]
) -> dict[str, Any]:
    """Where each sample's lag went. The check that showed it is the connection's last
    succeeded run (an applied check) finished before the first poll that showed it; the gap it
    fell into is between the connection's last check before the override and its next."""
    shown_by: dict[str, list[Any]] = {}
    for r in runs:
        if r.status == "succeeded":
            shown_by.setdefault(str(r.connection_id), []).append(r)
    wait, dur, show, containing = [], [], [], []
    missed = 0
    for s in samples:
        at = checks.get(uuid.UUID(s["cid"]), [])
        i = bisect.bisect_right(at, s["created"])
        if 0 < i < len(at):
            s["gap_s"] = at[i] - at[i - 1]
            containing.append(s["gap_s"])
        shown = [r for r in shown_by.get(s["cid"], []) if r.finished_at.timestamp() <= s["seen"]]
        if not shown:
            continue
        r = shown[-1]
        start = r.started_at.timestamp()
        # Checks (quiet or not) that started after the override yet did not show it.
        missed += sum(1 for x in at if s["created"] < x < start)
        s["wait_for_check_s"] = start - s["created"]
        s["check_s"] = (r.finished_at - r.started_at).total_seconds()
        s["show_s"] = s["seen"] - r.finished_at.timestamp()
        wait.append(s["wait_for_check_s"])
        dur.append(s["check_s"])
        show.append(s["show_s"])
    return {
        "explained": len(wait),
        "wait_for_check": _pct(wait),
        "check": _pct(dur),
        "commit_to_poll": _pct(show),
        "gap_the_override_fell_into": _pct(containing),
        "checks_after_the_override_that_missed_it": missed,
    }


# --- the processes' logs ------------------------------------------------------------------------


def fanout_rounds(log: Path) -> list[float]:
    """Instants (epoch seconds) the schedule worker received ``pagerduty.schedule_syncs``
    (Celery's "received" lines in its JSON log)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if "pagerduty.schedule_syncs" in line and "received" in line:
            with contextlib.suppress(ValueError, KeyError):
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                out.append(datetime.fromisoformat(stamp).timestamp())
    return out


# --- measuring ----------------------------------------------------------------------------------


def measure(
    targets: list[Target],
    control: Any,
    api: str,
    args: argparse.Namespace,
    rng: random.Random,
) -> dict[str, Any]:
    import httpx

    start = time.time()
    end = start + args.window
    give_up = end + 2 * (args.interval + args.jitter) + 60
    for t in targets:
        t.samples = []
        t.outstanding = None
        t.next_at = start + rng.uniform(0, args.max_wait)
    sweeps: list[float] = []
    made = 0
    with httpx.Client(timeout=10) as client:

        def on_duty(t: Target) -> set[str]:
            body = client.get(f"{api}/{t.ws_id}/rotations", headers=t.headers).json()
            (view,) = [r for r in body["rotations"] if r["id"] == str(t.rid)]
            return {m["email"].lower() for m in view["on_duty"]}

        while True:
            now = time.time()
            pending = [t for t in targets if t.outstanding is not None]
            if now >= end and not pending:
                break
            if now >= give_up:
                break
            for t in targets:
                if t.outstanding is None and now < end and time.time() >= t.next_at:
                    uid, email = t.people[t.turn % 2]
                    if email in on_duty(t):  # the other one's turn (a layer handed over)
                        t.turn += 1
                        uid, email = t.people[t.turn % 2]
                    created = time.time()
                    resp = control.post(
                        f"/accounts/{t.account}/schedules/{t.schedule}/overrides",
                        json={"user_id": uid, "duration_seconds": 3600},
                    )
                    resp.raise_for_status()
                    t.outstanding = {
                        "email": email,
                        "created": created,
                        "post_s": time.time() - created,
                    }
                    made += 1
            s0 = time.time()
            for t in targets:
                if t.outstanding is None:
                    continue
                last_unseen = time.time()
                if t.outstanding["email"] in on_duty(t):
                    seen = time.time()
                    t.samples.append(
                        {
                            "cid": str(t.cid),
                            "created": t.outstanding["created"],
                            "seen": seen,
                            "lag_s": seen - t.outstanding["created"],
                            "poll_started": last_unseen,
                            "post_s": t.outstanding["post_s"],
                        }
                    )
                    t.outstanding = None
                    t.turn += 1
                    t.next_at = seen + rng.uniform(0, args.max_wait)
            sweeps.append(time.time() - s0)
            time.sleep(max(0.0, args.poll - (time.time() - s0)))
    unresolved = [
        {"cid": str(t.cid), "waited_s": round(time.time() - t.outstanding["created"], 1)}
        for t in targets
        if t.outstanding is not None
    ]
    return {
        "made": made,
        "samples": [s for t in targets for s in t.samples],
        "unresolved": unresolved,
        "sweep_s": {
            "mean": round(statistics.fmean(sweeps), 3) if sweeps else None,
            "max": round(max(sweeps), 3) if sweeps else None,
        },
        "window": (start, end),
    }


def run_phase(
    name: str,
    targets: list[Target],
    sampler: CheckSampler,
    control: Any,
    api: str,
    args: argparse.Namespace,
    rng: random.Random,
    patch_dir: Path | None,
) -> dict[str, Any]:
    from models import utcnow

    tag = name.replace(" ", "-")
    make_all_due()
    phase_start = utcnow()
    say(f"[{name}] starting the schedule and sync workers, then beat (load {_load()})")
    procs = start_phase(tag, args, patch_dir)
    try:
        wait_first_round(targets, sampler, phase_start, 3 * args.interval + args.jitter + 60)
        say(f"[{name}] every connection checked once; measuring for {args.window:.0f} s")
        m = measure(targets, control, api, args, rng)
        say(
            f"[{name}] {len(m['samples'])} samples from {m['made']} overrides "
            f"({len(m['unresolved'])} never showed)"
        )
    finally:
        # Beat first, then let the countdowns already published run out, then the workers.
        stop(procs[2])
        time.sleep(args.jitter + 5)
        for proc in procs[:2]:
            stop(proc)
    runs = runs_since(phase_start)
    checks = checks_by_connection(sampler, runs, phase_start)
    log_dir = Path(os.environ["RRPD_VAR_DIR"])
    rounds = fanout_rounds(log_dir / f"{tag}-worker-schedule.log")
    drawn_file = patch_dir / "drawn.txt" if patch_dir else None
    drawn = drawn_file.read_text().splitlines() if drawn_file and drawn_file.exists() else []
    lags = [s["lag_s"] for s in m["samples"]]
    quiet = len(sampler.quiet_since(phase_start))
    out = {
        "phase": name,
        "lag": _pct(lags),
        "overrides_made": m["made"],
        "unresolved": m["unresolved"],
        "poll_sweep_s": m["sweep_s"],
        "where_it_went": explain(m["samples"], runs, checks),
        "gaps": gaps(checks),
        "checks": {
            "quiet": quiet,
            "runs": len(runs),
            "run_statuses": dict(sorted(Counter(str(r.status) for r in runs).items())),
        },
        "fanout_rounds": len(rounds),
        "fanout_round_spacing_s": _pct([b - a for a, b in itertools.pairwise(rounds)]),
        "patched_draws_logged": len(drawn),
        "patched_draws_sample": drawn[:5],
        "lags_s": [round(x, 3) for x in lags],
        "samples_detail": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
            for s in m["samples"]
        ],
    }
    say(f"[{name}] done: lag {out['lag']}; gaps {out['gaps']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--window", type=float, default=300, help="measuring seconds per phase")
    parser.add_argument("--interval", type=int, default=60, help="RRPD_SYNC_INTERVAL_SECONDS")
    parser.add_argument("--jitter", type=int, default=20, help="RRPD_SYNC_JITTER_SECONDS")
    parser.add_argument("--batch-size", type=int, default=50, help="RRPD_CHECK_BATCH_SIZE")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="an override is made this long at most after the workspace's previous one "
        "showed (uniform; default 2 x interval)",
    )
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between poll sweeps")
    parser.add_argument("--sync-concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}"
    )
    args = parser.parse_args()
    if args.max_wait is None:
        args.max_wait = 2.0 * args.interval
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    assert set(phases) <= set(PHASES), phases
    _configure(args)

    from pagerduty_sim.generator import fleet
    from pagerduty_sim.server import start_simulator
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade
    from workers.core.settings import reset_settings_cache
    from workers.sync import run as sync

    rng = random.Random(args.seed)
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspaces": args.workspaces,
        "interval_s": args.interval,
        "jitter_s": args.jitter,
        "batch_size": args.batch_size,
        "window_s": args.window,
        "max_wait_s": args.max_wait,
        "poll_s": args.poll,
        "cpus": os.cpu_count(),
        "load_before": _load(),
        "logs": os.environ["RRPD_VAR_DIR"],
        "phases": {},
    }
    _admin(f'CREATE DATABASE "{DB}"')
    api_proc: subprocess.Popen[bytes] | None = None
    sampler: CheckSampler | None = None
    patch_dir = Path(tempfile.mkdtemp(prefix="rrpd-bench-lag-site-"))
    (patch_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    try:
        upgrade()
        scenario = fleet(args.workspaces, USERS, SCHEDULES)
        with start_simulator(
            scenario, in_thread=False, latency_ms=LATENCY_MS, log_level="error"
        ) as sim:
            os.environ.update(
                RRPD_PAGERDUTY_API_URL=sim.base_url,
                RRPD_PAGERDUTY_EU_API_URL=sim.eu_base_url,
                RRPD_PAGERDUTY_IDENTITY_URL=sim.identity_url,
            )
            reset_settings_cache()
            targets = arrange(scenario, args.workspaces, sim.control)
            t0 = time.monotonic()
            for t in targets:
                assert sync.sync_connection(t.cid, kind="initial").status == "succeeded"
            say(
                f"{len(targets)} workspaces arranged and first-synced "
                f"({time.monotonic() - t0:.1f} s in this process)"
            )
            sampler = CheckSampler()
            sampler.start()
            port = free_port()
            api_proc = spawn_rrpd("api", "api", "--port", str(port))
            api = f"http://127.0.0.1:{port}/v1/workspaces"
            _wait_api(api, targets[0], api_proc)
            for name in phases:
                figures["phases"][name] = run_phase(
                    name,
                    targets,
                    sampler,
                    sim.control,
                    api,
                    args,
                    rng,
                    patch_dir if name == "fresh draw" else None,
                )
    finally:
        if sampler is not None:
            sampler.stop()
            figures["sampler"] = {"polls": _pct(sampler.polls), "errors": sampler.errors}
        if api_proc is not None:
            stop(api_proc)
        shutil.rmtree(patch_dir, ignore_errors=True)
        dispose_engines()
        _admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        _clean_redis()
    figures["load_after"] = _load()
    report(figures, args)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_override_lag.json").write_text(json.dumps(figures, indent=2, default=str))
    return 0


def _wait_api(api: str, t: Target, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{api}/{t.ws_id}/rotations", headers=t.headers, timeout=2).is_success:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the API exited"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.2)


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    goal = args.interval + 5
    figures["goal_p99_s"] = goal
    say()
    say(
        f"Override lag (override made -> API shows the person on duty), "
        f"{args.workspaces} workspaces, interval {args.interval} s, jitter {args.jitter} s, "
        f"batches of {args.batch_size}, {figures['cpus']} CPUs, load {figures['load_before']} -> "
        f"{figures['load_after']}"
    )
    head = f"{'phase':<12} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}   goal p99<={goal}s"
    say(head)
    say("-" * len(head))
    for name, p in figures["phases"].items():
        lag = p["lag"]
        if not lag:
            say(f"{name:<12} no samples")
            continue
        ok = "met" if lag["p99_s"] <= goal else "NOT met"
        say(
            f"{name:<12} {lag['n']:>4} {lag['p50_s']:>7.1f}s {lag['p90_s']:>7.1f}s "
            f"{lag['p99_s']:>7.1f}s {lag['max_s']:>7.1f}s   {ok}"
        )
    say()
    for name, p in figures["phases"].items():
        g, w, k = p["gaps"], p["where_it_went"], p["checks"]
        wait, gi = w["wait_for_check"], w["gap_the_override_fell_into"]
        say(
            f"{name}: {k['quiet']} quiet checks + {k['runs']} runs {k['run_statuses']}; gaps "
            f"between a connection's checks (n {g.get('n')}): min {g.get('min_s')} s, median "
            f"{g.get('median_s')} s, max {g.get('max_s')} s, {g.get('outside_interval_pm_2s')} "
            f"outside interval +- 2 s"
        )
        say(
            f"  lag = wait for the check that showed it (p50 {wait.get('p50_s')}, p99 "
            f"{wait.get('p99_s')}, max {wait.get('max_s')}) + the check (p99 "
            f"{w['check'].get('p99_s')}) + commit to poll (p99 {w['commit_to_poll'].get('p99_s')})"
            f"; {w['explained']} of {p['lag'].get('n', 0)} explained; poll sweep "
            f"{p['poll_sweep_s']}"
        )
        say(
            f"  gap the override fell into: p50 {gi.get('p50_s')} s, max {gi.get('max_s')} s; "
            f"checks after an override that missed it: "
            f"{w['checks_after_the_override_that_missed_it']}"
        )
        say(
            f"  patched draws logged {p['patched_draws_logged']}; fan-out rounds "
            f"{p['fanout_rounds']}, spacing {p['fanout_round_spacing_s']}"
        )
    ph = figures["phases"]
    if all(name in ph and ph[name]["lag"] for name in PHASES):
        fixed, fresh = ph["fixed"]["lag"], ph["fresh draw"]["lag"]
        figures["ratio_p99_fresh_over_fixed"] = round(fresh["p99_s"] / fixed["p99_s"], 3)
        figures["ratio_max_fresh_over_fixed"] = round(fresh["max_s"] / fixed["max_s"], 3)
        say()
        say(
            f"p99 fresh draw / fixed: {figures['ratio_p99_fresh_over_fixed']:.2f}x "
            f"(max: {figures['ratio_max_fresh_over_fixed']:.2f}x)"
        )
    if "sampler" in figures:
        s = figures["sampler"]
        say(
            f"sampler: {s['polls'].get('n')} polls, p99 {s['polls'].get('p99_s')} s, "
            f"{s['errors']} failed"
        )


if __name__ == "__main__":
    sys.exit(main())

"""The on-call report's time for a year of a large workspace.

    .venv/bin/python bench/bench_on_call_report.py [--rotations 300] [--days 365] [--repeat 5]

One workspace in PostgreSQL (a database of its own, dropped after), time zone Europe/Paris (so
the DST days are walked), 300 rotations of 4 members each (1,200 members), and a year of
history: a handoff every 12 hours in every rotation, 730 intervals per rotation (219,000 in
all, the last of each open). Then ``GET /v1/workspaces/{W}/on-call-report`` over the whole year,
all rotations, JSON (and once CSV), through the real app in-process (FastAPI's TestClient: auth,
the one SQL statement, the arithmetic, the JSON), ``--repeat`` times; prints the median.

Needs PostgreSQL at 127.0.0.1:5432. Figures go to ``bench/results/bench_on_call_report.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import configure  # noqa: E402

RUN = uuid.uuid4().hex[:6]
DB = f"rrpd_bench_report_{RUN}"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SHIFT = timedelta(hours=12)


def arrange(rotations: int, days: int) -> tuple[uuid.UUID, uuid.UUID, int, Any]:
    from sqlalchemy import insert

    from models import Member, OnDutyInterval, Role, Rotation, Workspace, utcnow
    from workers.core.db import transaction

    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=days)
    with transaction() as s:
        ws = Workspace(name="Bench", time_zone="Europe/Paris")
        s.add(ws)
        s.flush()
        admin = Member(
            workspace_id=ws.id, email="admin@bench.test", display_name="Admin", role=Role.ADMIN
        )
        s.add(admin)
        s.flush()
        ws_id, admin_id = ws.id, admin.id
        member_rows = [
            {
                "id": uuid.uuid4(),
                "workspace_id": ws_id,
                "email": f"p{n}@bench.test",
                "email_key": f"p{n}@bench.test",
                "display_name": f"Person {n}",
                "role": "member",
            }
            for n in range(rotations * 4)
        ]
        s.execute(insert(Member), member_rows)
        rotation_ids = [uuid.uuid4() for _ in range(rotations)]
        s.execute(
            insert(Rotation),
            [
                {"id": rid, "workspace_id": ws_id, "name": f"Rotation {n}"}
                for n, rid in enumerate(rotation_ids)
            ],
        )
    total = 0
    shifts = int(timedelta(days=days) / SHIFT)
    for n, rid in enumerate(rotation_ids):
        people = member_rows[n * 4 : n * 4 + 4]
        rows = []
        for k in range(shifts):
            who = people[k % 4]
            began = start + k * SHIFT
            rows.append(
                {
                    "workspace_id": ws_id,
                    "rotation_id": rid,
                    "member_id": who["id"],
                    "name": who["display_name"],
                    "email": who["email"],
                    "started_at": began,
                    "ended_at": None if k == shifts - 1 else began + SHIFT,
                    "source": "handoff",
                }
            )
        with transaction() as s:
            s.execute(insert(OnDutyInterval), rows)
        total += len(rows)
    return ws_id, admin_id, total, now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rotations", type=int, default=300)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure("report", RUN, DB)

    from sqlalchemy import create_engine, text

    admin_engine = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{DB}"'))
    from fastapi.testclient import TestClient

    from api_stub.app import create_app
    from api_stub.auth import issue_token
    from workers.core.db import dispose_engines
    from workers.core.migrate import upgrade

    figures: dict[str, Any] = {"rotations": args.rotations, "days": args.days}
    try:
        upgrade()
        t0 = time.perf_counter()
        ws_id, admin_id, intervals, now = arrange(args.rotations, args.days)
        figures["intervals"] = intervals
        figures["arrange_s"] = round(time.perf_counter() - t0, 1)
        from workers.core.db import transaction

        with transaction() as s:
            size = s.execute(text("SELECT pg_total_relation_size('on_duty_intervals')")).scalar()
        figures["table_mib"] = round((size or 0) / 2**20, 1)
        print(
            f"{intervals:,} intervals in {figures['arrange_s']} s; table with its indexes "
            f"{figures['table_mib']} MiB"
        )
        headers = {"Authorization": f"Bearer {issue_token(ws_id, admin_id, 'admin')}"}
        since = (now - timedelta(days=args.days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        until = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"/v1/workspaces/{ws_id}/on-call-report?since={since}&until={until}"
        with TestClient(create_app()) as client:
            timings, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                r = client.get(url, headers=headers)
                # CPU of this process (the app runs in it; PostgreSQL does not): the figure a
                # loaded machine disturbs least.
                timings.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                r.raise_for_status()
            body = r.json()
            t0 = time.perf_counter()
            csv_answer = client.get(url, headers={**headers, "Accept": "text/csv"})
            csv_s = time.perf_counter() - t0
            csv_answer.raise_for_status()
        people = body["people"]
        seconds = sum(p["seconds_on_duty"] for p in people)
        figures.update(
            people=len(people),
            json_median_s=round(statistics.median(timings), 3),
            json_runs_s=[round(t, 3) for t in timings],
            json_cpu_median_s=round(statistics.median(cpu), 3),
            csv_s=round(csv_s, 3),
            json_bytes=len(r.content),
            seconds_on_duty_sum=seconds,
            period_seconds_times_rotations=args.rotations * args.days * 86400,
        )
        print(
            f"report over {args.days} days, {args.rotations} rotations, {len(people)} people: "
            f"median {figures['json_median_s']} s of {args.repeat} "
            f"({', '.join(str(t) for t in figures['json_runs_s'])}), "
            f"CPU of the app median {figures['json_cpu_median_s']} s; CSV {figures['csv_s']} s"
        )
        print(
            f"seconds on duty {seconds:,} = rotations x period "
            f"{figures['period_seconds_times_rotations']:,}: "
            f"{seconds == figures['period_seconds_times_rotations']}"
        )
    finally:
        dispose_engines()
        with admin_engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_on_call_report.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

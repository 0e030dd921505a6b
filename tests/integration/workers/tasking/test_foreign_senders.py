"""Another service sends our tasks by name, knowing only what docs/tasks.md tells it.

The sender runs in a process of its own with nothing of the project importable (``python -S``:
no ``.pth`` files, so not even the editable install's finder; only site-packages for celery,
kombu and redis). It sets the broker, the result backend and the key prefix, calls
``send_task(name, kwargs=...)`` with no queue, and reads each outcome from the result backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models import PagerDutyConnection, SyncRun
from tests.support.sync import arrange_demo
from workers.core.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

SENDER = textwrap.dedent(
    """
    import importlib.util, json, sys
    for ours in ("workers", "tasks", "models", "celeryconfig", "api_stub", "rrpd"):
        assert importlib.util.find_spec(ours) is None, f"{ours} must not be importable"
    from celery import Celery

    spec = json.loads(sys.argv[1])
    app = Celery("another-service", broker=spec["broker"], backend=spec["backend"])
    app.conf.broker_transport_options = {"global_keyprefix": spec["prefix"] + ":"}
    app.conf.result_backend_transport_options = {"global_keyprefix": spec["prefix"] + ":"}
    sent = []
    for item in spec["send"]:
        result = app.send_task(
            item["name"], args=item.get("args"), kwargs=item["kwargs"], **item.get("options", {})
        )
        sent.append(result)
    outcomes = []
    for result in sent:
        try:
            outcomes.append({"id": result.id, "result": result.get(timeout=60)})
        except Exception as exc:
            outcomes.append({"id": result.id, "error": repr(exc)})
    print(json.dumps(outcomes))
    """
)


def send_as_another_service(
    tmp_path: Path, send: list[dict[str, Any]], timeout: float = 120
) -> list[dict[str, Any]]:
    settings = get_settings()
    spec = {
        "broker": settings.broker_url,
        "backend": settings.result_backend,
        "prefix": settings.redis_key_prefix,
        "send": send,
    }
    site = sysconfig.get_paths()["purelib"]
    bootstrap = f"import sys; sys.path.append({site!r})\n" + SENDER
    done = subprocess.run(
        [sys.executable, "-S", "-c", bootstrap, json.dumps(spec)],
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_tasks_sent_by_name_run_on_their_queue(session, sim, live_workers, tmp_path) -> None:
    demo = arrange_demo(session, sim)
    cid = str(demo.connection_id)
    started = time.monotonic()
    outcomes = send_as_another_service(
        tmp_path,
        [
            {"name": "rrpd.ping", "kwargs": {"payload": "from another service"}},
            {
                "name": "pagerduty.sync_connection",
                "kwargs": {"connection_id": cid, "kind": "manual"},
            },
            {"name": "pagerduty.disconnect", "kwargs": {"connection_id": cid}},
        ],
    )
    assert outcomes[0]["result"] == {"reply": "from another service"}
    sync_result, disconnect_result = outcomes[1]["result"], outcomes[2]["result"]
    # The sync ran on a sync worker (or was fenced by the disconnect that raced it).
    assert sync_result["status"] in ("succeeded", "skipped", "unavailable"), sync_result
    assert disconnect_result["status"] == "disconnected"
    assert time.monotonic() - started < 60
    session.expire_all()
    assert session.get(PagerDutyConnection, demo.connection_id).status == "disconnected"
    if sync_result["status"] == "succeeded":
        run = session.scalars(select(SyncRun).where(SyncRun.connection_id == demo.connection_id))
        assert [r.kind for r in run] == ["manual"]


def test_bad_arguments_are_refused_in_words_once_and_never_retried(
    session, live_workers, tmp_path
) -> None:
    bogus = str(uuid.uuid4())
    outcomes = send_as_another_service(
        tmp_path,
        [
            {"name": "pagerduty.sync_connection", "kwargs": {"connection_id": "x"}},
            {
                "name": "pagerduty.sync_connection",
                "kwargs": {"connection_id": bogus, "kind": "bogus"},
            },
            {"name": "pagerduty.disconnect", "kwargs": {"connection_id": bogus, "api_key": "u+1"}},
            {"name": "pagerduty.validate_api_key", "kwargs": {"connection_id": bogus}},
            {"name": "pagerduty.disconnect", "args": [bogus], "kwargs": {}},
            {"name": "pagerduty.no_such_task", "kwargs": {}},
            # A sender that names the queue itself is checked by the task on arrival.
            {
                "name": "pagerduty.sync_connection",
                "kwargs": {"connection_id": "also-not-a-uuid"},
                "options": {"queue": "sync"},
            },
        ],
    )
    results = [o["result"] for o in outcomes]
    assert all(r["status"] == "refused" for r in results), results
    errors = [r["error"] for r in results]
    assert errors[0] == "connection_id must be a UUID, got 'x'"
    assert errors[1] == "kind must be one of scheduled, manual, initial, binding; got 'bogus'"
    assert errors[2] == "pagerduty.disconnect takes no argument api_key"
    assert errors[3] == "pagerduty.validate_api_key needs generation"
    assert errors[4] == "pagerduty.disconnect takes keyword arguments only, got 1 positional"
    assert errors[5].startswith("no task named 'pagerduty.no_such_task'")
    assert errors[6] == "connection_id must be a UUID, got 'also-not-a-uuid'"
    assert "u+1" not in json.dumps(results)

    # One WARNING per refusal, no traceback, no retry.
    logs = "".join(
        Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
        for proc in live_workers.values()
    )
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    for outcome in outcomes:
        mine = [line for line in lines if line.get("task_id") == outcome["id"]]
        refused = [line for line in mine if str(line.get("event", "")).startswith("refused ")]
        assert len(refused) == 1, mine
        assert refused[0]["level"] == "warning"
        assert not [line for line in mine if line.get("level") in ("error", "critical")], mine
        assert not [line for line in mine if "retry" in str(line.get("event", "")).lower()]

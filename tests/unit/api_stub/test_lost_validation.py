"""What ends a validation whose task was lost after it was published (kombu popped it and the
worker died, the broker lost its data, or it was dropped as poison), and that docs/api.md and
docs/tasks.md both say exactly that. (A publish lost with Redis at the API's commit cannot
happen any more: the task is an outbox row of that commit;
tests/integration/workers/outbox/test_outbox_faults.py.)"""

from __future__ import annotations

from datetime import timedelta

from models import PagerDutyConnection
from models.connection import PENDING_WORK_AFTER, ConnectionStatus
from tests.support.processes import ROOT
from workers.connections import messages
from workers.deadlines.drive import MAX_VALIDATION_DRIVES, run_round

GOOD_KEY = "u+abcdefghijklmnopqrst"


def test_a_lost_validation_is_driven_again_then_ends_invalid_with_try_again(
    client, world, session, sent
) -> None:
    url = f"/v1/workspaces/{world.ws.id}/pagerduty"
    r = client.put(f"{url}/api-key", json={"api_key": GOOD_KEY}, headers=world.headers(world.admin))
    assert r.status_code == 202
    assert sent.names() == ["pagerduty.validate_api_key"]  # ... and the message is lost
    conn = session.get(PagerDutyConnection, r.json()["connection"]["id"])
    began = conn.status_changed_at
    first = began + timedelta(seconds=PENDING_WORK_AFTER[ConnectionStatus.VALIDATING])
    assert conn.drive_at == first

    # Not yet: before its deadline nothing happens.
    assert run_round(first - timedelta(seconds=1)).claimed == 0
    assert client.get(url, headers=world.headers(world.admin)).json()["status"] == "validating"

    # Past it: the same task again (each of these messages is lost too), then a clear end.
    now = first
    while True:
        session.expire_all()
        conn = session.get(PagerDutyConnection, conn.id)
        if conn.status != ConnectionStatus.VALIDATING:
            break
        now = conn.drive_at
        run_round(now)
    assert now - began <= timedelta(seconds=60)
    assert sent.names() == ["pagerduty.validate_api_key"] * (1 + MAX_VALIDATION_DRIVES)
    status = client.get(url, headers=world.headers(world.admin)).json()
    assert status["status"] == "invalid"
    assert status["status_message"] == messages.CHECK_LOST
    assert "PagerDuty" not in messages.CHECK_LOST  # nothing says PagerDuty was at fault


def _prose(path: str) -> str:
    return " ".join((ROOT / path).read_text().split())


def test_api_and_task_docs_say_what_really_ends_a_lost_validation() -> None:
    message = " ".join(messages.CHECK_LOST.split())
    for path in ("docs/api.md", "docs/tasks.md"):
        text = _prose(path)
        assert "stays `validating` until" not in text, path
        assert "which runs every 5 minutes, moves a connection" not in text, path  # the sweep
        assert "lost validation" in text, path
        for words in (
            "deadline",
            f"{MAX_VALIDATION_DRIVES} times",
            "within a minute",
            "`invalid`",
            message,
        ):
            assert words in text, (path, words)

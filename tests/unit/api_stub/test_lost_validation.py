"""What ends a validation whose task was lost after it was published (the broker lost its data,
or the message was dropped as poison), and that docs/api.md and docs/tasks.md both say exactly
that. (A publish lost with Redis at the API's commit cannot happen any more: the task is an
outbox row of that commit; tests/integration/workers/outbox/test_outbox_faults.py.)"""

from __future__ import annotations

from datetime import timedelta

from models import PagerDutyConnection, utcnow
from tests.support.processes import ROOT
from workers.connections import messages, sweeps

GOOD_KEY = "u+abcdefghijklmnopqrst"


def test_a_lost_validation_ends_invalid_with_try_again(client, world, session, sent) -> None:
    url = f"/v1/workspaces/{world.ws.id}/pagerduty"
    r = client.put(f"{url}/api-key", json={"api_key": GOOD_KEY}, headers=world.headers(world.admin))
    assert r.status_code == 202
    assert sent.names() == ["pagerduty.validate_api_key"]  # ... and the message is lost
    conn = session.get(PagerDutyConnection, r.json()["connection"]["id"])
    stale_after = sweeps.STALE_AFTER["api_key"]

    # Not yet: a validation may legitimately take a while (retries).
    conn.status_changed_at = utcnow() - timedelta(seconds=stale_after - 30)
    session.commit()
    assert sweeps.expire_stale_validations() == 0
    assert client.get(url, headers=world.headers(world.admin)).json()["status"] == "validating"

    conn.status_changed_at = utcnow() - timedelta(seconds=stale_after + 1)
    session.commit()
    assert sweeps.expire_stale_validations() == 1
    status = client.get(url, headers=world.headers(world.admin)).json()
    assert status["status"] == "invalid"
    assert status["status_message"] == messages.CHECK_LOST
    assert "PagerDuty" not in messages.CHECK_LOST  # nothing says PagerDuty was at fault


def _prose(path: str) -> str:
    return " ".join((ROOT / path).read_text().split())


def test_api_and_task_docs_say_what_really_ends_a_lost_validation() -> None:
    from celeryconfig import beat_schedule

    sweep = beat_schedule["refresh-expiring-tokens"]
    assert sweep["task"] == "pagerduty.refresh_expiring_tokens"
    every = int(sweep["schedule"] // 60)
    oauth = sweeps.STALE_AFTER["oauth"] // 60
    api_key = sweeps.STALE_AFTER["api_key"] // 60
    message = " ".join(messages.CHECK_LOST.split())
    for path in ("docs/api.md", "docs/tasks.md"):
        text = _prose(path)
        assert "stays `validating` until" not in text, path
        assert "lost validation" in text, path
        for words in (
            "`pagerduty.refresh_expiring_tokens`",
            f"every {every} minutes",
            f"{oauth} minutes (OAuth)",
            f"{api_key} minutes (API key)",
            "`invalid`",
            message,
            f"about {oauth + every} or {api_key + every} minutes",
        ):
            assert words in text, (path, words)

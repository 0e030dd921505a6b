"""The panel's rotation list says who comes on duty next, under who is on duty, to the second:
"next: Bob from <time datetime=...Z>" (the viewer's local time in a browser, UTC without one)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api_stub.app import create_app
from models import utcnow
from tests.support.handoffs import arrange, snapshot, sync

pytestmark = [pytest.mark.postgres_only, pytest.mark.clock]

M = timedelta(minutes=1)
T = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)


def test_the_rotation_row_shows_the_next_handoff(session: Session) -> None:
    a = arrange(session)
    sync(session, a, snapshot(T, [("ann", T - 60 * M, T + 10 * M), ("bob", T + 10 * M, None)]))
    with TestClient(create_app(), follow_redirects=False) as client:
        page = client.get("/panel")
        token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
        assert token
        r = client.post(
            "/panel/act-as",
            data={"member_id": str(a.members["ann"]), "csrf_token": token.group(1)},
        )
        assert r.status_code == 303, r.text
        html = client.get("/panel").text
    row = html[html.index('data-rotation="Primary"') :]
    row = row[: row.index("</tr>")]
    on_duty = row[row.index('class="on-duty"') :]
    at = T + 10 * M
    assert (
        f'next: Bob from <time datetime="{at:%Y-%m-%dT%H:%M:%S}Z" '
        f'title="{at:%Y-%m-%d %H:%M:%S} UTC" data-local>{at:%Y-%m-%d %H:%M:%S} UTC</time>'
    ) in on_duty
    assert "next:" not in row[row.index('class="mode"') : row.index('class="members"')]

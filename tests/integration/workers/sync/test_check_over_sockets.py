"""The on-call check against the simulator over real sockets (the real PagerDutyClient and
httpx transport): an override created now is in the rotation after one check, which made the
stated requests and left the directory unread."""

from __future__ import annotations

import pytest

from tests.support.sync import (
    ACCOUNT,
    arrange_demo,
    expected_members,
    fast_client,
    on_call,
    rotation_state,
)
from workers.sync import run

pytestmark = pytest.mark.postgres_only


def test_an_override_reaches_the_rotation_in_one_check_over_sockets(session, sim) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, sim)
    first = run.sync_once(demo.connection_id, kind="initial", client_factory=fast_client)
    assert (first.status, first.read) == ("succeeded", "directory")
    sim.control.post("/stats/reset").raise_for_status()
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUERIN1", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()

    check = run.sync_once(demo.connection_id, client_factory=fast_client)

    assert (check.status, check.read, check.requests) == ("succeeded", "check", 3)
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["erin"] in duty
    assert duty == expected_members(demo, on_call(sim, "PSPRIMA"))
    # What the simulator itself counted: no user listing, no v3 list.
    stats = sim.control.get("/stats").json()
    assert stats["by_endpoint"] == {
        "GET /schedules": 1,
        "GET /oncalls": 1,
        "GET /v3/schedules/{id}": 1,
    }, stats

"""The on-call check against the simulator over real sockets (the real PagerDutyClient and
httpx transport): an override created now, on a v2 or a v3 schedule, is in the rotation after
one check, which made the stated requests and left the directory unread: one /oncalls over now
when nothing changed; one more, over the handoff window of the schedule whose on-call now is not
what the stored timeline says, after an override (workers.pagerduty.window)."""

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
    quiet = run.sync_once(demo.connection_id, client_factory=fast_client)
    assert (quiet.status, quiet.read, quiet.requests) == ("succeeded", "check", 1)
    assert (quiet.created, quiet.updated, quiet.deleted) == (0, 0, 0)
    sim.control.post("/stats/reset").raise_for_status()
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUERIN1", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()

    check = run.sync_once(demo.connection_id, client_factory=fast_client)

    assert (check.status, check.read, check.requests) == ("succeeded", "check", 2)
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["erin"] in duty
    assert duty == expected_members(demo, on_call(sim, "PSPRIMA"))
    # What the simulator itself counted: one /oncalls over now for the three bound schedules
    # (v3 too), one over the window for PSPRIMA; no user listing, schedule list or v3 detail.
    stats = sim.control.get("/stats").json()
    assert stats["by_endpoint"] == {"GET /oncalls": 2}, stats


def test_a_v3_override_reaches_the_rotation_in_one_check_without_a_v3_detail(session, sim) -> None:  # type: ignore[no-untyped-def]
    """/oncalls reports v3 schedules (PagerDuty's 2026-03-18 schema, Oncall.schedule): the
    override replacing Frank in the Follow-the-Sun pair shows from /oncalls alone."""
    demo = arrange_demo(session, sim)
    run.sync_once(demo.connection_id, kind="initial", client_factory=fast_client)
    sim.control.post("/stats/reset").raise_for_status()
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSFTSUN/overrides",
        json={
            "user_id": "PUBOB01",
            "rotation_id": "PRFTS01",
            "overridden_user_id": "PUFRANK",
            "start": "now-1m",
            "duration_seconds": 600,
        },
    ).raise_for_status()

    check = run.sync_once(demo.connection_id, client_factory=fast_client)

    assert (check.status, check.read) == ("succeeded", "check")
    _, duty = rotation_state(session, demo.rotations["fts"])
    assert demo.members["bob"] in duty
    assert demo.members["frank"] not in duty
    assert duty == expected_members(demo, on_call(sim, "PSFTSUN"))
    stats = sim.control.get("/stats").json()
    assert "GET /v3/schedules/{id}" not in stats["by_endpoint"], stats

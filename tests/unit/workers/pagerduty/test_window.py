"""``window.narrow``: the upcoming read (7 days of on-call) hands the handoff plan exactly what
the 6-hour read would have, shift for shift, so the two can alternate without rewriting the
on-call mirror or the planned handoffs. In process (the real client on the simulator's state)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from models import utcnow
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.sync import ACCOUNT
from workers.pagerduty.records import Credential
from workers.pagerduty.snapshot import read_snapshot

BOUND = ["PSPRIMA", "PSSECON", "PSFTSUN"]  # v2 in policies, v2, v3


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


@pytest.mark.clock
def test_the_7_day_read_cut_to_6_hours_is_the_6_hour_read(fake: InProcessPagerDuty) -> None:
    now = utcnow().replace(microsecond=0)
    # An override that crosses the 6-hour edge, and one tomorrow.
    for start, hours in ((now + timedelta(hours=5), 3), (now + timedelta(days=1), 8)):
        fake.control.post(
            f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
            json={
                "user_id": "PUERIN1",
                "start": start.isoformat(),
                "duration_seconds": hours * 3600,
            },
        ).raise_for_status()
    client = fake.reader_factory("", Credential("api_key", fake.api_key()))

    six = read_snapshot(client, bound=BOUND, now=now)
    week = read_snapshot(client, bound=BOUND, now=now, upcoming=timedelta(days=7))

    assert six.upcoming == {}
    assert six.upcoming_until is None
    assert week.upcoming_until == now + timedelta(days=7)
    for sid in BOUND:
        assert week.timelines[sid].until == six.timelines[sid].until == now + timedelta(hours=6)
        assert set(week.timelines[sid].shifts) == set(six.timelines[sid].shifts), sid
        assert week.upcoming[sid].until == now + timedelta(days=7)
    # Tomorrow's override is only in the 7 days.
    tomorrow = now + timedelta(days=1, hours=1)
    assert {u.id for u in week.upcoming["PSPRIMA"].on_call_at(tomorrow)} == {"PUERIN1"}
    # The same requests: one detail whatever its window; here one /oncalls page either way.
    assert week.requests_by_endpoint == six.requests_by_endpoint

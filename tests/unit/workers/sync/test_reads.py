"""The two reads (``workers.sync.run.read_plan``): an on-call check every interval, the directory
on its own cadence and on demand. In process (tests/support/fake_pagerduty.py): the real client,
snapshot and diff code against the simulator's state, PostgreSQL as usual, no sockets.

Freshness: what a user would notice (an override, a member added or removed, a schedule edit)
is in the rotation after the very next check, not after the next directory read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import PagerDutyConnection, PagerDutyUser, utcnow
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.sync import (
    ACCOUNT,
    arrange_demo,
    expected_members,
    on_call,
    rotation_state,
)
from workers.sync import run

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def fake() -> Iterator[InProcessPagerDuty]:
    with InProcessPagerDuty() as pagerduty:
        yield pagerduty


def _sync(fake: InProcessPagerDuty, demo, **kwargs):  # type: ignore[no-untyped-def]
    """One pass; returns its result and the requests it made, by endpoint."""
    before = len(fake.clients)
    result = run.sync_once(demo.connection_id, client_factory=fake.sync_factory, **kwargs)
    counts: dict[str, int] = {}
    for client in fake.clients[before:]:
        for endpoint, n in client.requests_by_endpoint.items():
            counts[endpoint] = counts.get(endpoint, 0) + n
    assert result.status == "succeeded", result
    return result, counts


# The demo account: PSPRIMA and PSSECON are v2 schedules escalation policies use, PSFTSUN a v3
# schedule. A directory read is users + v2 list + v3 list + v3 detail + /oncalls = 5 requests;
# a check is the v2 list (members) + /oncalls + the bound v3 detail = 3.
QUIET_CHECK = {"GET /schedules": 1, "GET /oncalls": 1, "GET /v3/schedules/{id}": 1}


def test_a_quiet_check_reads_exactly_the_stated_requests(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    first, _ = _sync(fake, demo, kind="initial")
    assert (first.read, first.requests) == ("directory", 5)

    quiet, counts = _sync(fake, demo)

    assert quiet.read == "check"
    assert counts == QUIET_CHECK, counts
    assert (quiet.requests, quiet.created, quiet.updated, quiet.deleted) == (3, 0, 0, 0)


def test_an_override_created_now_is_in_the_rotation_after_one_check(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()

    result, _ = _sync(fake, demo)

    assert result.read == "check"
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["frank"] in duty
    assert duty == expected_members(demo, on_call(fake, "PSPRIMA"))


def test_a_schedule_edit_is_in_the_rotation_after_one_check(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["dave"] in duty  # the demo's override POPRIM1
    fake.control.delete(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides/POPRIM1"
    ).raise_for_status()

    result, _ = _sync(fake, demo)

    assert result.read == "check"
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["dave"] not in duty
    assert duty == expected_members(demo, on_call(fake, "PSPRIMA"))


def test_a_member_removed_leaves_the_rotation_after_one_check(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    members, _ = rotation_state(session, demo.rotations["secondary"])
    assert demo.members["carol"] in members
    # The layer edited in place (PagerDuty's "remove user" API ends the layer instead, and the
    # ended layer still lists her among the schedule's users, whichever read is made).
    account = fake.state.accounts[ACCOUNT]
    account.schedules["PSSECON"].layers[0].users.remove("PUCAROL")
    account.invalidate()

    result, _ = _sync(fake, demo)

    assert result.read == "check"
    members, _ = rotation_state(session, demo.rotations["secondary"])
    assert demo.members["carol"] not in members
    assert members == [demo.members["bob"], demo.members["dave"]]


def test_a_known_member_added_joins_the_rotation_after_one_check(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    account = fake.state.accounts[ACCOUNT]
    account.schedules["PSPRIMA"].layers[0].users.append("PUFRANK")
    account.invalidate()

    result, counts = _sync(fake, demo)

    assert (result.read, counts) == ("check", QUIET_CHECK)
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members[n] for n in ("alice", "bob", "carol", "frank")]


def test_a_new_person_makes_the_same_pass_read_the_directory(session, fake) -> None:  # type: ignore[no-untyped-def]
    """Someone the mirror has never seen: only the directory has their email, so the check
    becomes a directory read at once rather than leaving them out for up to 15 minutes."""
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    fake.control.post(
        f"/accounts/{ACCOUNT}/users",
        json={"id": "PUNEW01", "name": "Nia", "email": "nia@example.com", "time_zone": "UTC"},
    ).raise_for_status()
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUNEW01", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()

    result, counts = _sync(fake, demo)

    assert result.read == "directory"
    assert counts["GET /users"] == 1  # the check's requests, then the directory's
    assert (
        session.execute(
            select(PagerDutyUser.name).where(
                PagerDutyUser.connection_id == demo.connection_id,
                PagerDutyUser.pagerduty_id == "PUNEW01",
            )
        ).scalar_one()
        == "Nia"
    )


def test_a_check_leaves_the_mirror_alone_and_sync_now_reads_it(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    fake.control.patch(
        f"/accounts/{ACCOUNT}/users/PUBOB01", json={"name": "Robert"}
    ).raise_for_status()

    def bob() -> str:
        session.rollback()
        return session.execute(
            select(PagerDutyUser.name).where(
                PagerDutyUser.connection_id == demo.connection_id,
                PagerDutyUser.pagerduty_id == "PUBOB01",
            )
        ).scalar_one()

    check, _ = _sync(fake, demo)
    assert (check.read, check.created, check.updated, check.deleted) == ("check", 0, 0, 0)
    assert bob() == "Bob"

    manual, _ = _sync(fake, demo, kind="manual")
    assert manual.read == "directory"
    assert bob() == "Robert"


def test_the_directory_is_read_again_after_its_interval(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    read_at = session.get(PagerDutyConnection, demo.connection_id).directory_read_at
    assert read_at is not None
    assert abs((read_at - start).total_seconds()) < 1

    soon, _ = _sync(fake, demo, now=lambda: start + timedelta(seconds=899))
    due, _ = _sync(fake, demo, now=lambda: start + timedelta(seconds=900))

    assert (soon.read, due.read) == ("check", "directory")


def test_binding_and_the_first_sync_read_the_directory(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    first, _ = _sync(fake, demo)  # scheduled, but the directory was never read
    again, _ = _sync(fake, demo, kind="binding")
    assert (first.read, again.read) == ("directory", "directory")

"""The two reads (``workers.sync.run.read_plan``): an on-call check every interval, the directory
on its own cadence and on demand. In process (tests/support/fake_pagerduty.py): the real client,
snapshot and diff code against the simulator's state, PostgreSQL as usual, no sockets.

Freshness: who is on call (an override, v2 or v3, a schedule edit) is in the rotation after the
very next check; members follow on the directory cadence (900 s) or at once on "sync now"; the
user directory is listed daily, and someone met in between is read alone (GET /users/{id}).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import (
    Member,
    PagerDutyConnection,
    PagerDutyUser,
    ScheduledHandoff,
    Workspace,
    utcnow,
)
from tests.support import factories
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
# schedule one uses too. A directory read is users + v2 list + v3 list + v3 detail + /oncalls =
# 5 requests; a check is one /oncalls over now for all three, v3 included.
QUIET_CHECK = {"GET /oncalls": 1}
# A check that finds on call now someone the stored timeline does not name (an override, an
# edit): one more /oncalls, over the handoff window, for that schedule.
STALE_CHECK = {"GET /oncalls": 2}
# A directory read on its cadence, the user directory not due: no GET /users pages.
MEMBERS_READ = {
    "GET /schedules": 1,
    "GET /v3/schedules": 1,
    "GET /v3/schedules/{id}": 1,
    "GET /oncalls": 1,
}


def test_a_quiet_check_reads_exactly_the_stated_requests(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    first, _ = _sync(fake, demo, kind="initial")
    assert (first.read, first.requests) == ("directory", 5)

    quiet, counts = _sync(fake, demo)

    assert quiet.read == "check"
    assert counts == QUIET_CHECK, counts
    assert (quiet.requests, quiet.created, quiet.updated, quiet.deleted) == (1, 0, 0, 0)


def test_a_v3_override_is_in_the_rotation_after_one_check_without_a_v3_detail(  # type: ignore[no-untyped-def]
    session, fake
) -> None:
    """/oncalls reports v3 schedules (PagerDuty's 2026-03-18 schema): the override that replaces
    Erin in the Follow-the-Sun pair shows from the check's /oncalls requests (now, then the
    window of the schedule whose on-call changed), no v3 detail."""
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    _, duty = rotation_state(session, demo.rotations["fts"])
    assert demo.members["erin"] in duty
    assert demo.members["dave"] not in duty
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSFTSUN/overrides",
        json={
            "user_id": "PUDAVE1",
            "rotation_id": "PRFTS01",
            "overridden_user_id": "PUERIN1",
            "start": "now-1m",
            "duration_seconds": 600,
        },
    ).raise_for_status()

    result, counts = _sync(fake, demo)

    assert (result.read, counts) == ("check", STALE_CHECK)
    _, duty = rotation_state(session, demo.rotations["fts"])
    assert demo.members["dave"] in duty
    assert demo.members["erin"] not in duty
    assert duty == expected_members(demo, on_call(fake, "PSFTSUN"))


def _pending(session) -> list[tuple[int, str, object, list[str]]]:  # type: ignore[no-untyped-def]
    session.rollback()
    return [
        (r.id, r.schedule_id, r.at, r.user_ids)
        for r in session.scalars(select(ScheduledHandoff).order_by(ScheduledHandoff.id))
    ]


def test_a_quiet_check_leaves_the_planned_handoffs_as_the_directory_read_left_them(  # type: ignore[no-untyped-def]
    session, fake
) -> None:
    """The check reads one second: it must not shrink the stored timeline to that second."""
    demo = arrange_demo(session, fake)
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    planned = _pending(session)
    assert planned  # the demo's schedules hand over within the 6-hour window

    quiet, counts = _sync(fake, demo, now=lambda: start + timedelta(seconds=60))

    assert (quiet.read, counts) == ("check", QUIET_CHECK)
    assert (quiet.created, quiet.updated, quiet.deleted) == (0, 0, 0)
    assert _pending(session) == planned  # the very rows: neither re-planned nor dropped


def test_an_override_seen_by_a_check_is_planned_as_a_directory_read_plans_it(  # type: ignore[no-untyped-def]
    session, fake
) -> None:
    """Its end (Frank hands back) is a handoff the stored timeline lacked: the check reads the
    window again, and plans exactly what a directory read at that instant plans."""
    demo = arrange_demo(session, fake)
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    at = start + timedelta(seconds=60)

    check, counts = _sync(fake, demo, now=lambda: at)
    assert (check.read, counts) == ("check", STALE_CHECK)
    after_check = [row[1:] for row in _pending(session)]
    assert any("PUFRANK" not in ids for sid, _at, ids in after_check if sid == "PSPRIMA")

    manual, _ = _sync(fake, demo, kind="manual", now=lambda: at)
    assert manual.read == "directory"
    assert [row[1:] for row in _pending(session)] == after_check


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


@pytest.mark.parametrize("when", ["directory cadence", "sync now"])
def test_a_member_removed_leaves_the_rotation_on_the_directory_cadence(  # type: ignore[no-untyped-def]
    session, fake, when
) -> None:
    demo = arrange_demo(session, fake)
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    members, _ = rotation_state(session, demo.rotations["secondary"])
    assert demo.members["carol"] in members
    # The layer edited in place (PagerDuty's "remove user" API ends the layer instead, and the
    # ended layer still lists her among the schedule's users, whichever read is made).
    account = fake.state.accounts[ACCOUNT]
    account.schedules["PSSECON"].layers[0].users.remove("PUCAROL")
    account.invalidate()

    check, _ = _sync(fake, demo, now=lambda: start + timedelta(seconds=60))
    assert check.read == "check"
    members, _ = rotation_state(session, demo.rotations["secondary"])
    assert demo.members["carol"] in members  # members are not read every minute

    if when == "sync now":
        result, _ = _sync(fake, demo, kind="manual", now=lambda: start + timedelta(seconds=120))
    else:
        result, counts = _sync(fake, demo, now=lambda: start + timedelta(seconds=900))
        assert counts == MEMBERS_READ, counts
    assert result.read == "directory"
    members, _ = rotation_state(session, demo.rotations["secondary"])
    assert members == [demo.members["bob"], demo.members["dave"]]


def test_a_known_member_added_joins_the_rotation_on_the_directory_cadence(session, fake) -> None:  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, fake)
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    account = fake.state.accounts[ACCOUNT]
    account.schedules["PSPRIMA"].layers[0].users.append("PUFRANK")
    account.invalidate()

    check, counts = _sync(fake, demo, now=lambda: start + timedelta(seconds=60))
    assert (check.read, counts) == ("check", QUIET_CHECK)
    due, counts = _sync(fake, demo, now=lambda: start + timedelta(seconds=900))

    assert (due.read, counts) == ("directory", MEMBERS_READ)
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members[n] for n in ("alice", "bob", "carol", "frank")]


def _nia(session, demo, schedule_id: str, fake) -> Member:  # type: ignore[no-untyped-def]
    """Nia, new in PagerDuty and in the workspace, on call by an override on ``schedule_id``."""
    nia = factories.member(
        session, session.get(Workspace, demo.workspace_id), email="nia@example.com"
    )
    session.commit()
    fake.control.post(
        f"/accounts/{ACCOUNT}/users",
        json={"id": "PUNEW01", "name": "Nia", "email": "nia@example.com", "time_zone": "UTC"},
    ).raise_for_status()
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/{schedule_id}/overrides",
        json={"user_id": "PUNEW01", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    return nia


def _linked(session, demo, pagerduty_id: str):  # type: ignore[no-untyped-def]
    session.rollback()
    return session.execute(
        select(PagerDutyUser.name, PagerDutyUser.member_id).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == pagerduty_id,
        )
    ).one()


def test_a_new_person_on_call_is_read_alone_and_linked_in_the_same_pass(session, fake) -> None:  # type: ignore[no-untyped-def]
    """Someone the mirror has never seen, met by a schedule's detail (no policy uses PSUNUSE):
    the pass reads the schedules and that one person (GET /users/{id}), not the user
    directory, and she is on duty in the rotation at once."""
    demo = arrange_demo(session, fake, bind={"unused": "PSUNUSE"})
    _sync(fake, demo, kind="initial")
    nia = _nia(session, demo, "PSUNUSE", fake)

    result, counts = _sync(fake, demo)

    assert result.read == "directory"
    assert counts["GET /users/{id}"] == 1
    assert "GET /users" not in counts
    assert tuple(_linked(session, demo, "PUNEW01")) == ("Nia", nia.id)
    _, duty = rotation_state(session, demo.rotations["unused"])
    assert duty == {nia.id}


def test_a_new_person_oncalls_names_in_full_costs_no_user_read(session, fake) -> None:  # type: ignore[no-untyped-def]
    """/oncalls embeds full users (include[]=users): met there, nobody is read by id."""
    demo = arrange_demo(session, fake)
    _sync(fake, demo, kind="initial")
    nia = _nia(session, demo, "PSPRIMA", fake)

    result, counts = _sync(fake, demo)

    assert result.read == "directory"
    assert "GET /users" not in counts
    assert "GET /users/{id}" not in counts
    assert tuple(_linked(session, demo, "PUNEW01")) == ("Nia", nia.id)
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert nia.id in duty


def test_the_user_directory_is_listed_daily_and_on_demand(session, fake) -> None:  # type: ignore[no-untyped-def]
    # Erin is on no bound schedule, so no /oncalls answer embeds her (that would refresh her).
    # The v3 schedule is unbound here: its detail waits for the daily read too.
    demo = arrange_demo(session, fake, bind={"primary": "PSPRIMA"})
    start = utcnow()
    _sync(fake, demo, kind="initial", now=lambda: start)
    fake.control.patch(
        f"/accounts/{ACCOUNT}/users/PUERIN1", json={"name": "Erin Renamed"}
    ).raise_for_status()

    cadence, counts = _sync(fake, demo, now=lambda: start + timedelta(seconds=900))
    unbound_v3 = {k: n for k, n in MEMBERS_READ.items() if k != "GET /v3/schedules/{id}"}
    assert (cadence.read, counts) == ("directory", unbound_v3)
    # The unbound v3 schedule keeps its mirrored members and time zone: nothing was written.
    assert (cadence.created, cadence.updated, cadence.deleted) == (0, 0, 0)
    assert _linked(session, demo, "PUERIN1").name == "Erin"

    daily, counts = _sync(fake, demo, now=lambda: start + timedelta(days=1))
    assert (daily.read, counts["GET /users"]) == ("directory", 1)
    assert _linked(session, demo, "PUERIN1").name == "Erin Renamed"
    listed_at = session.get(PagerDutyConnection, demo.connection_id).users_read_at
    assert listed_at is not None
    assert abs((listed_at - (start + timedelta(days=1))).total_seconds()) < 1

    manual, counts = _sync(
        fake, demo, kind="manual", now=lambda: start + timedelta(days=1, seconds=60)
    )
    assert (manual.read, counts["GET /users"]) == ("directory", 1)


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

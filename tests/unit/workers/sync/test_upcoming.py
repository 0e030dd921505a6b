"""Upcoming shifts ("your shift moved", workers.sync.upcoming): the sync keeps each bound
rotation's next 7 days and publishes ``rotation.upcoming_changed`` when a read finds them
changed. In process (tests/support/fake_pagerduty.py: the real client, snapshot and apply on
the simulator's state); PostgreSQL and SQLite alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Member, PagerDutyConnection, Role, RotationUpcoming, utcnow
from tests.support.fake_pagerduty import InProcessPagerDuty
from tests.support.outbox import committed_events, paused_outbox
from tests.support.sync import ACCOUNT, arrange_demo
from workers.core.access import Actor
from workers.core.db import transaction
from workers.disconnect import transaction as disconnect
from workers.rotations import binding
from workers.sync import run
from workers.sync.upcoming_diff import Span, merge, subtract

pytestmark = [pytest.mark.both_databases, pytest.mark.clock]

ROOT = Path(__file__).resolve().parents[4]
SCHEMA = json.loads((ROOT / "docs" / "events.schema.json").read_text())
UPCOMING = "rotation.upcoming_changed"


@pytest.fixture
def fake(db: str) -> Iterator[InProcessPagerDuty]:
    with paused_outbox(), InProcessPagerDuty() as pagerduty:
        yield pagerduty


def _sync(fake: InProcessPagerDuty, demo: Any, at: datetime, kind: str = "scheduled") -> Any:
    result = run.sync_once(
        demo.connection_id, kind=kind, client_factory=fake.sync_factory, now=lambda: at
    )
    assert result.status == "succeeded", result
    return result


def _upcoming_events() -> list[dict[str, Any]]:
    found = [e for e in committed_events() if e["type"] == UPCOMING]
    for event in found:
        jsonschema.validate(event, SCHEMA)
    return found


def _stored(session: Session, rotation_id: Any) -> RotationUpcoming | None:
    session.rollback()
    return session.get(RotationUpcoming, rotation_id)


def _spans(row: RotationUpcoming, lo: datetime, hi: datetime) -> dict[str, list[Span]]:
    """Who the stored plan has on call in [lo, hi), per PagerDuty user."""
    out: dict[str, list[Span]] = {}
    for uid, start, end in row.intervals:
        s, e = max(datetime.fromisoformat(start), lo), min(datetime.fromisoformat(end), hi)
        if s < e:
            out.setdefault(uid, []).append((s, e))
    return {uid: merge(spans) for uid, spans in out.items()}


def _iso(spans: list[Span]) -> list[dict[str, str]]:
    z = "%Y-%m-%dT%H:%M:%S.%fZ"
    return [
        {"start": s.astimezone(UTC).strftime(z), "end": e.astimezone(UTC).strftime(z)}
        for s, e in spans
    ]


def test_an_override_for_tomorrow_is_one_event_naming_who_gains_and_who_loses(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    start = utcnow().replace(microsecond=0)
    _sync(fake, demo, start, kind="initial")
    primary = demo.rotations["primary"]
    first = _stored(session, primary)
    assert first is not None  # the first read stores the plan...
    assert _upcoming_events() == []  # ...and tells nobody
    assert first.read_until - first.read_from == timedelta(days=7)

    # Tomorrow 09:00-17:00 UTC, Erin covers the primary schedule (she is not in its layers).
    lo = (start + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    hi = lo + timedelta(hours=8)
    before = _spans(first, lo, hi)
    assert "PUERIN1" not in before
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUERIN1", "start": lo.isoformat(), "end": hi.isoformat()},
    ).raise_for_status()

    later = start + timedelta(hours=1)  # the next upcoming read, an hour on
    _sync(fake, demo, later)

    (event,) = _upcoming_events()
    assert event["rotation_id"] == str(primary)
    assert event["connection_id"] == str(demo.connection_id)
    assert event["workspace_id"] == str(demo.workspace_id)
    assert event["data"]["schedule_id"] == "PSPRIMA"
    people = {p["pagerduty_user_id"]: p for p in event["data"]["people"]}
    erin = people.pop("PUERIN1")
    assert erin["added"] == _iso([(lo, hi)])
    assert erin["removed"] == []
    assert erin["member_id"] == str(demo.members["erin"])
    assert erin["email"] == "erin@example.com"
    assert erin["name"] == "Erin"
    # Whoever the plan had on call then loses exactly those hours.
    assert set(people) == set(before)
    for uid, person in people.items():
        assert person["added"] == []
        assert person["removed"] == _iso(before[uid])
    stored = _stored(session, primary)
    assert stored is not None
    assert stored.read_from == later

    # Read again, nothing changed: no event, and the stored plan is not written.
    _sync(fake, demo, start + timedelta(hours=2))
    assert len(_upcoming_events()) == 1
    again = _stored(session, primary)
    assert again is not None
    assert again.read_from == later


def test_the_upcoming_read_runs_hourly_with_the_directory_and_on_demand(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    start = utcnow().replace(microsecond=0)
    _sync(fake, demo, start, kind="initial")

    def read_at() -> datetime | None:
        session.rollback()
        return session.get_one(PagerDutyConnection, demo.connection_id).upcoming_read_at

    assert read_at() == start
    _sync(fake, demo, start + timedelta(minutes=15))  # the directory, not yet the 7 days
    assert read_at() == start
    _sync(fake, demo, start + timedelta(minutes=60))
    assert read_at() == start + timedelta(minutes=60)
    _sync(fake, demo, start + timedelta(minutes=61), kind="manual")  # "sync now"
    assert read_at() == start + timedelta(minutes=61)


def test_a_member_removed_from_the_schedule_moves_their_future_turns(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    start = utcnow().replace(microsecond=0)
    _sync(fake, demo, start, kind="initial")
    first = _stored(session, demo.rotations["secondary"])
    assert first is not None
    carol_before = _spans(first, start + timedelta(days=1), first.read_until).get("PUCAROL")
    assert carol_before  # a daily rotation of four: Carol has a turn in the week

    fake.control.delete(f"/accounts/{ACCOUNT}/schedules/PSSECON/users/PUCAROL").raise_for_status()
    _sync(fake, demo, start + timedelta(hours=1), kind="manual")

    (event,) = [
        e for e in _upcoming_events() if e["rotation_id"] == str(demo.rotations["secondary"])
    ]
    people = {p["pagerduty_user_id"]: p for p in event["data"]["people"]}
    assert people["PUCAROL"]["added"] == []
    assert people["PUCAROL"]["removed"]
    assert people["PUCAROL"]["member_id"] == str(demo.members["carol"])
    # The contractor's turns move too: no member matches them, PagerDuty's id and name say who.
    contractor = people["PUCONTR"]
    assert (contractor["member_id"], contractor["email"]) == (None, None)
    assert contractor["name"]
    # Every hour Carol lost went to someone else (nobody's hours were simply dropped).
    gained = merge(
        (datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]))
        for p in people.values()
        for s in p["added"]
    )
    lost = merge(
        (datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]))
        for p in people.values()
        for s in p["removed"]
    )
    assert subtract(lost, gained) == []


def test_unbinding_and_disconnecting_clear_the_stored_plans(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(session, fake)
    _sync(fake, demo, utcnow().replace(microsecond=0), kind="initial")

    def stored() -> int:
        session.rollback()
        return session.scalar(select(func.count()).select_from(RotationUpcoming)) or 0

    assert stored() == 3
    admin = session.scalars(select(Member).where(Member.workspace_id == demo.workspace_id)).first()
    assert admin is not None
    actor = Actor(demo.workspace_id, admin.id, Role.ADMIN)
    with transaction() as tx:
        binding.unbind_rotation(tx, actor, demo.rotations["primary"])
    assert stored() == 2
    disconnect.disconnect_connection(demo.connection_id)
    assert stored() == 0


def test_a_rotation_following_two_schedules_plans_the_union_of_their_shifts(
    session: Session, fake: InProcessPagerDuty
) -> None:
    demo = arrange_demo(
        session,
        fake,
        bind={"both": "PSPRIMA,PSSECON", "primary": "PSPRIMA", "secondary": "PSSECON"},
    )
    start = utcnow().replace(microsecond=0)
    _sync(fake, demo, start, kind="initial")
    both = _stored(session, demo.rotations["both"])
    primary = _stored(session, demo.rotations["primary"])
    secondary = _stored(session, demo.rotations["secondary"])
    assert both is not None
    assert primary is not None
    assert secondary is not None
    lo, hi = both.read_from, both.read_until
    union: dict[str, list[Span]] = {}
    for row in (primary, secondary):
        for uid, spans in _spans(row, lo, hi).items():
            union[uid] = merge([*union.get(uid, []), *spans])
    assert _spans(both, lo, hi) == union
    assert both.schedule_id == "PSPRIMA"  # the first names it, as `schedule` does

    # An override in the second schedule only moves the two-schedule rotation's plan too.
    day = (start + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    fake.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSSECON/overrides",
        json={
            "user_id": "PUERIN1",
            "start": day.isoformat(),
            "end": (day + timedelta(hours=8)).isoformat(),
        },
    ).raise_for_status()
    _sync(fake, demo, start + timedelta(hours=1))
    moved = {e["rotation_id"] for e in _upcoming_events()}
    assert str(demo.rotations["both"]) in moved
    assert str(demo.rotations["secondary"]) in moved
    assert str(demo.rotations["primary"]) not in moved

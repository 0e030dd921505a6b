"""Scheduled checks in batches (workers/sync/batch.py): what an operator and a workspace see.

PostgreSQL and Redis for real, the simulator for PagerDuty; the batch is called as the task
calls it, without Celery around it (tests/integration/tasks/test_sync.py runs the task).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from models import PagerDutyConnection, PagerDutyOnCall, SyncRun
from tests.support.sync import (
    ACCOUNT,
    Demo,
    arrange_demo,
    count_statements,
    count_writes,
    expected_members,
    fast_client,
    fixed_clock,
    on_call,
    rotation_state,
)
from workers.connections.status import connection_status
from workers.core import locks
from workers.core.db import transaction
from workers.pagerduty.errors import Transient
from workers.sync import batch
from workers.sync import run as sync
from workers.sync.coalescing import lease_name

pytestmark = [pytest.mark.postgres_only, pytest.mark.clock]


def _synced_demos(session: Any, sim: Any, clock: Any, binds: list[dict[str, str]]) -> list[Demo]:
    """Connections that had their first sync (the directory read) at ``clock``."""
    demos = [arrange_demo(session, sim, bind=bind) for bind in binds]
    for demo in demos:
        first = sync.sync_connection(
            demo.connection_id, kind="initial", client_factory=fast_client, now=clock
        )
        assert first.status == "succeeded", first
    session.rollback()
    return demos


def _runs(session: Any) -> int:
    session.rollback()
    return int(session.scalar(select(func.count()).select_from(SyncRun)) or 0)


def _conn(session: Any, demo: Demo) -> PagerDutyConnection:
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn is not None
    return conn


def _set(connection_id: uuid.UUID, **values: Any) -> None:
    """A change made by someone else, committed (a reconnect, a "sync now", ...)."""
    with transaction() as s:
        s.execute(
            update(PagerDutyConnection)
            .where(PagerDutyConnection.id == connection_id)
            .values(**values)
        )


PRIMARY = {"primary": "PSPRIMA"}
SECONDARY = {"secondary": "PSSECON"}


def test_a_batch_of_quiet_connections_inserts_no_row_and_stamps_their_checks(session, sim) -> None:
    clock = fixed_clock()
    demos = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY, PRIMARY])
    runs = _runs(session)

    with count_statements() as statements, count_writes() as writes:
        out = batch.check_connections(
            [d.connection_id for d in demos], client_factory=fast_client, now=clock
        )

    assert (out.connections, out.quiet, out.applied, out.failed) == (3, 3, 0, 0)
    # For the whole batch: the plan's five reads (connections, bound rotations, members, the
    # stored on-call: mirror and due handoffs), one look-up of the people the checks named
    # beyond their schedules' members, and one UPDATE of "last checked".
    assert len(statements) == 7, statements
    assert [w.split()[:2] for w in writes] == [["UPDATE", "pagerduty_connections"]], writes
    assert _runs(session) == runs  # no row inserted
    for demo in demos:
        conn = _conn(session, demo)
        assert conn.last_checked_at == clock()
        assert (conn.last_check_requests or 0) > 0


def test_the_one_that_changed_is_applied_with_its_event_and_the_rest_stay_quiet(
    session, sim
) -> None:
    clock = fixed_clock()
    changed, quiet = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY])
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    runs = _runs(session)

    out = batch.check_connections(
        [changed.connection_id, quiet.connection_id], client_factory=fast_client, now=clock
    )

    assert (out.quiet, out.applied) == (1, 1)
    _, duty = rotation_state(session, changed.rotations["primary"])
    assert changed.members["frank"] in duty
    assert duty == expected_members(changed, on_call(sim, "PSPRIMA"))
    # The change is history (one run, for the changed connection) and an event for consumers.
    assert _runs(session) == runs + 1
    recorded = session.scalars(
        select(SyncRun.connection_id).order_by(SyncRun.started_at.desc()).limit(1)
    ).one()
    assert recorded == changed.connection_id
    events = session.execute(
        text(
            "SELECT payload FROM outbox_messages WHERE kind = 'event' "
            "AND name = 'rotation.on_duty.changed'"
        )
    ).scalars()
    assert str(changed.rotations["primary"]) in {p["rotation_id"] for p in events}
    assert _conn(session, quiet).last_checked_at == clock()


def test_a_connection_whose_generation_moved_mid_batch_is_not_written(session, sim) -> None:
    clock = fixed_clock()
    moved, other = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY])

    def factory(cred: Any) -> Any:
        if cred.connection_id == moved.connection_id:
            # Reconnected while the batch reads: the plan's generation is stale by the record.
            _set(moved.connection_id, generation=PagerDutyConnection.generation + 1)
        return fast_client(cred)

    batch.check_connections(
        [moved.connection_id, other.connection_id], client_factory=factory, now=clock
    )

    assert _conn(session, moved).last_checked_at is None
    assert _conn(session, other).last_checked_at == clock()


def test_a_connection_already_being_synced_is_skipped(session, sim) -> None:
    clock = fixed_clock()
    busy, free = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY])
    runs = _runs(session)

    with locks.hold_lease(lease_name(busy.connection_id), 15.0) as held:
        assert held is not None
        out = batch.check_connections(
            [busy.connection_id, free.connection_id], client_factory=fast_client, now=clock
        )

    assert (out.covered, out.quiet) == (1, 1)
    assert _conn(session, busy).last_checked_at is None  # its running sync covers the check
    assert _conn(session, free).last_checked_at == clock()
    assert _runs(session) == runs


class _Unreachable:
    """A reader whose PagerDuty is down (5xx, timeouts): every read raises ``Transient``."""

    requests_made = 0
    requests_by_endpoint: dict[str, int] = {}
    rate_limited_by_endpoint: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise Transient("PagerDuty answered 503")

        return fail


def test_one_connections_failed_read_is_recorded_and_the_others_are_checked(
    session, sim, monkeypatch
) -> None:
    clock = fixed_clock()
    down, fine = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY])
    retries: list[Any] = []
    monkeypatch.setattr(batch, "publish_many", lambda spec, messages: retries.extend(messages))

    def factory(cred: Any) -> Any:
        return _Unreachable() if cred.connection_id == down.connection_id else fast_client(cred)

    out = batch.check_connections(
        [down.connection_id, fine.connection_id], client_factory=factory, now=clock
    )

    assert (out.quiet, out.failed) == (1, 1)
    session.rollback()
    run = session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == down.connection_id)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).one()
    assert run.status == "failed"
    assert "could not be read right now" in (run.error or "")
    assert _conn(session, down).consecutive_sync_failures == 1
    assert _conn(session, fine).last_checked_at == clock()
    # The failed one retries on its own, as a single sync would.
    assert [m[0]["connection_id"] for m in retries] == [str(down.connection_id)]


def test_status_shows_the_last_quiet_check_as_the_last_sync(session, sim) -> None:
    clock = fixed_clock()
    (demo,) = _synced_demos(session, sim, clock, [PRIMARY])
    a_minute_later = fixed_clock(clock() + timedelta(seconds=60))
    out = batch.check_connections(
        [demo.connection_id], client_factory=fast_client, now=a_minute_later
    )
    assert out.quiet == 1

    session.rollback()
    status = connection_status(session, demo.workspace_id)

    # The API's last_sync (and `rrpd status`, which prints it) is the quiet check, not the
    # first sync's run a minute before it.
    last = status.last_sync
    assert last is not None
    assert (last.status, last.kind, last.started_at) == (
        "succeeded",
        "scheduled",
        a_minute_later(),
    )
    assert last.requests_made == _conn(session, demo).last_check_requests
    assert (last.rows_created, last.rows_updated, last.rows_deleted) == (0, 0, 0)


def test_a_pending_sync_now_goes_through_the_single_pass_and_is_recorded(session, sim) -> None:
    clock = fixed_clock()
    (demo,) = _synced_demos(session, sim, clock, [PRIMARY])
    _set(demo.connection_id, sync_requested_at=clock())
    runs = _runs(session)

    out = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)

    assert (out.single, out.quiet) == (1, 0)
    assert _runs(session) == runs + 1  # the person waiting sees a run
    assert _conn(session, demo).sync_requested_at is None


def test_unknown_ids_are_unavailable(session, db) -> None:
    out = batch.check_connections([uuid.uuid4()], client_factory=fast_client)
    assert (out.connections, out.quiet, out.unavailable) == (1, 0, 1)


def test_a_check_that_finds_the_stored_on_call_wrong_is_applied_and_the_next_is_quiet(
    session, sim
) -> None:
    """Quiet is decided against the stored timeline read for the whole batch: where PagerDuty's
    "now" differs from it (here the on-call mirror lost its rows), the check goes through
    apply, which repairs it (a change: recorded); the next check confirms it and is quiet."""
    clock = fixed_clock()
    (demo,) = _synced_demos(session, sim, clock, [PRIMARY])
    with transaction() as s:
        s.execute(
            delete(PagerDutyOnCall).where(PagerDutyOnCall.connection_id == demo.connection_id)
        )
    runs = _runs(session)

    first = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)
    second = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)

    assert (first.applied, first.quiet) == (1, 0)
    assert (second.applied, second.quiet) == (0, 1)
    assert _runs(session) == runs + 1
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert duty == expected_members(demo, on_call(sim, "PSPRIMA"))
    session.rollback()
    mirrored = session.scalar(
        select(func.count())
        .select_from(PagerDutyOnCall)
        .where(PagerDutyOnCall.connection_id == demo.connection_id)
    )
    assert mirrored == len(on_call(sim, "PSPRIMA"))


UNUSED = {"unused": "PSUNUSE"}  # no escalation policy uses it: /oncalls does not show it


def test_a_schedule_oncalls_does_not_show_is_confirmed_by_its_window_and_stays_quiet(
    session, sim
) -> None:
    """Its detail is read over the whole window; where that window agrees with the stored
    timeline (who is on call now, the handoffs ahead) the check is as quiet, in statements,
    as a batch of schedules /oncalls shows."""
    clock = fixed_clock()
    shown = _synced_demos(session, sim, clock, [PRIMARY, SECONDARY])
    with count_statements() as baseline:
        batch.check_connections(
            [d.connection_id for d in shown], client_factory=fast_client, now=clock
        )
    demos = _synced_demos(session, sim, clock, [UNUSED, PRIMARY])
    runs = _runs(session)

    with count_statements() as statements, count_writes() as writes:
        out = batch.check_connections(
            [d.connection_id for d in demos], client_factory=fast_client, now=clock
        )

    assert (out.connections, out.quiet, out.applied, out.failed) == (2, 2, 0, 0)
    assert len(statements) == len(baseline) == 7, statements
    assert [w.split()[:2] for w in writes] == [["UPDATE", "pagerduty_connections"]], writes
    assert _runs(session) == runs  # no row inserted
    assert _conn(session, demos[0]).last_checked_at == clock()


def test_a_rotation_following_two_schedules_stays_quiet_and_follows_either(session, sim) -> None:
    clock = fixed_clock()
    (demo,) = _synced_demos(session, sim, clock, [{"both": "PSPRIMA,PSSECON"}])
    rid = demo.rotations["both"]
    _, duty = rotation_state(session, rid)
    both = on_call(sim, "PSPRIMA") | on_call(sim, "PSSECON")
    assert duty == expected_members(demo, both)  # everyone on call in either
    runs = _runs(session)

    # Nothing changed in either schedule: the check writes no run and no rotation row.
    with count_writes() as writes:
        out = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)
    assert (out.quiet, out.applied) == (1, 0)
    assert [w.split()[:2] for w in writes] == [["UPDATE", "pagerduty_connections"]], writes
    assert _runs(session) == runs

    # An override in the second schedule only: applied, the first's people stay on duty.
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSSECON/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    out = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)
    assert (out.quiet, out.applied) == (0, 1)
    _, duty = rotation_state(session, rid)
    assert demo.members["frank"] in duty
    assert duty == expected_members(demo, on_call(sim, "PSPRIMA") | on_call(sim, "PSSECON"))
    assert expected_members(demo, on_call(sim, "PSPRIMA")) <= duty

    # And the next check is quiet again.
    out = batch.check_connections([demo.connection_id], client_factory=fast_client, now=clock)
    assert (out.quiet, out.applied) == (1, 0)

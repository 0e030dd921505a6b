"""The sync as plain functions: diffing, matching, fencing, failure handling, coalescing, fan-out.

PostgreSQL for the database, the in-process PagerDuty simulator for PagerDuty. Every call goes
through ``workers.sync`` exactly as the task does, only without Celery around it.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from models import (
    PagerDutyConnection,
    PagerDutySchedule,
    PagerDutyUser,
    Rotation,
    RotationMember,
    RotationOnDuty,
    SyncRun,
    utcnow,
)
from tests.support.sync import (
    ACCOUNT,
    arrange_demo,
    count_statements,
    count_writes,
    expected_members,
    fast_client,
    fixed_clock,
    mirror_counts,
    on_call,
    rotation_state,
)
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync import run as sync
from workers.tasking.contract import RETRY_POLICIES, Family

pytestmark = [pytest.mark.postgres_only, pytest.mark.clock]

SYNC_RETRY = RETRY_POLICIES[Family.SYNC]
assert SYNC_RETRY is not None

# --- end to end against the simulator (no Celery) -----------------------------------------------


def test_first_sync_mirrors_the_account_and_fills_bound_rotations(session, sim) -> None:
    demo = arrange_demo(session, sim)
    result = sync.sync_connection(demo.connection_id, kind="initial", client_factory=fast_client)

    assert result.status == "succeeded", result
    # users 1 page + v2 schedules 1 page + v3 list 1 + one v3 schedule + one /oncalls for the
    # two bound v2 schedules (both used by an escalation policy) = 5 requests.
    assert result.requests == 5
    counts = mirror_counts(session, demo.connection_id)
    assert counts["pagerduty_users"] == 7
    assert counts["pagerduty_schedules"] == 4
    users = {
        u.pagerduty_id: u
        for u in session.execute(
            select(PagerDutyUser).where(PagerDutyUser.connection_id == demo.connection_id)
        ).scalars()
    }
    # Case-insensitive, trimmed matching: Alice's member email is "  Alice@Example.COM ".
    assert users["PUALICE"].member_id == demo.members["alice"]
    assert users["PUCONTR"].member_id is None  # the contractor has no member: unmatched
    versions = dict(
        session.execute(
            select(PagerDutySchedule.pagerduty_id, PagerDutySchedule.version).where(
                PagerDutySchedule.connection_id == demo.connection_id
            )
        ).all()
    )
    assert versions == {"PSPRIMA": "v2", "PSSECON": "v2", "PSFTSUN": "v3", "PSUNUSE": "v2"}

    # Primary: members in the layer's order; Dave is on call through the demo override.
    members, duty = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members[n] for n in ("alice", "bob", "carol")]
    assert duty == {demo.members["dave"]} == expected_members(demo, on_call(sim, "PSPRIMA"))
    # Secondary: whoever the daily layer has on call now (the contractor maps to nobody).
    _, duty = rotation_state(session, demo.rotations["secondary"])
    assert duty == expected_members(demo, on_call(sim, "PSSECON"))
    # v3 follow-the-sun: Erin and Frank overlap around the clock, so both are on duty at once.
    _, duty = rotation_state(session, demo.rotations["fts"])
    assert {demo.members["erin"], demo.members["frank"]} <= duty
    assert duty == expected_members(demo, on_call(sim, "PSFTSUN"))

    # The hand-made rotation is not touched.
    members, duty = rotation_state(session, demo.manual_rotation)
    assert members == [demo.members["alice"], demo.members["bob"]]
    assert duty == {demo.members["bob"]}

    run = session.get(SyncRun, uuid.UUID(result.sync_run_id))
    assert (run.status, run.kind, run.requests_made) == ("succeeded", "initial", 5)
    assert run.rows_created == result.created > 0
    assert run.rows_deleted == 0
    assert run.rows_updated == 3  # the three bound rotations' last_synced_at (first sync)
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.last_synced_at is not None
    assert conn.consecutive_sync_failures == 0
    for rid in demo.rotations.values():
        assert session.get(Rotation, rid).last_synced_at is not None


def test_quiet_resync_inserts_no_row_and_stamps_the_check(session, sim) -> None:
    demo = arrange_demo(session, sim)
    clock = fixed_clock()  # the same instant twice: on-call cannot move between the runs
    first = sync.sync_connection(demo.connection_id, client_factory=fast_client, now=clock)
    assert first.status == "succeeded"
    assert first.created > 0
    session.rollback()
    runs_before = session.scalar(select(func.count()).select_from(SyncRun))
    rotations_before = {
        rid: session.get(Rotation, rid).updated_at for rid in demo.rotations.values()
    }

    with count_writes() as writes:
        second = sync.sync_connection(demo.connection_id, client_factory=fast_client, now=clock)

    assert second.status == "succeeded"
    assert second.sync_run_id is None  # nothing to keep in the history
    assert (second.created, second.updated, second.deleted) == (0, 0, 0)
    # The one write: the connection row's "last checked" (no row inserted anywhere).
    assert len(writes) == 1, writes
    assert writes[0].startswith("UPDATE pagerduty_connections"), writes
    session.rollback()
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(SyncRun)) == runs_before
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.last_checked_at == clock()
    assert conn.last_check_requests == second.requests
    for rid, before in rotations_before.items():
        assert session.get(Rotation, rid).updated_at == before


def test_a_quiet_check_reads_every_rotations_planned_handoffs_in_one_statement(
    session, sim
) -> None:
    """One query per bound rotation was 300 of a large account's 313 statements a minute."""
    demo = arrange_demo(session, sim)
    assert len(demo.rotations) == 3
    clock = fixed_clock()
    first = sync.sync_connection(demo.connection_id, client_factory=fast_client, now=clock)
    assert first.status == "succeeded"
    session.rollback()

    with count_statements(("SELECT",)) as selects:
        again = sync.sync_connection(demo.connection_id, client_factory=fast_client, now=clock)

    assert again.status == "succeeded"
    assert len([s for s in selects if "scheduled_handoffs" in s]) == 1, selects


def test_upstream_changes_reach_mirror_and_rotations_with_exact_counts(session, sim) -> None:
    demo = arrange_demo(session, sim, bind={"primary": "PSPRIMA"})
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    # Frank goes on call in Primary by override; Bob changes his email to one nobody has.
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    sim.control.patch(
        f"/accounts/{ACCOUNT}/users/PUBOB01", json={"email": "robert@elsewhere.example"}
    ).raise_for_status()

    # An email is directory data: a "sync now" reads it (a scheduled check would not).
    result = sync.sync_connection(demo.connection_id, kind="manual", client_factory=fast_client)

    assert result.status == "succeeded"
    members, duty = rotation_state(session, demo.rotations["primary"])
    # Bob is no longer matched: he leaves the rotation's members; order is kept for the others.
    assert members == [demo.members["alice"], demo.members["carol"]]
    assert demo.members["frank"] in duty
    assert duty == expected_members(demo, on_call(sim, "PSPRIMA"))
    bob = session.execute(
        select(PagerDutyUser).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == "PUBOB01",
        )
    ).scalar_one()
    assert (bob.email_key, bob.member_id) == ("robert@elsewhere.example", None)

    # The user is deleted upstream. PagerDuty keeps a deleted user on schedules as an inactive
    # placeholder: the schedule still names Carol, but she is inactive, never linked, and
    # leaves the rotation, at the next directory read (members' cadence, 900 s).
    sim.control.delete(f"/accounts/{ACCOUNT}/users/PUCAROL").raise_for_status()
    later = utcnow() + timedelta(seconds=900)
    result = sync.sync_connection(demo.connection_id, client_factory=fast_client, now=lambda: later)
    assert (result.status, result.read) == ("succeeded", "directory")
    members, _ = rotation_state(session, demo.rotations["primary"])
    assert members == [demo.members["alice"]]
    carol = session.execute(
        select(PagerDutyUser).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == "PUCAROL",
        )
    ).scalar_one()
    assert (carol.active, carol.member_id) == (False, None)


def test_vanished_bound_schedule_keeps_the_rotation_and_says_so(session, sim) -> None:
    demo = arrange_demo(session, sim, bind={"primary": "PSPRIMA", "ghost": "PSGONE1"})
    # Give the ghost rotation a state of its own.
    with session.begin_nested():
        session.add(
            RotationMember(
                rotation_id=demo.rotations["ghost"], member_id=demo.members["erin"], position=0
            )
        )
        session.add(
            RotationOnDuty(rotation_id=demo.rotations["ghost"], member_id=demo.members["erin"])
        )
    session.commit()

    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)

    assert result.status == "succeeded"
    assert "PSGONE1" in result.error
    assert "keeps its last members" in result.error
    members, duty = rotation_state(session, demo.rotations["ghost"])
    assert (members, duty) == ([demo.members["erin"]], {demo.members["erin"]})
    ghost = session.get(Rotation, demo.rotations["ghost"])
    assert ghost.mode == "pagerduty"
    assert ghost.pagerduty_schedule_id == "PSGONE1"
    run = session.get(SyncRun, uuid.UUID(result.sync_run_id))
    assert run.status == "succeeded"
    assert "PSGONE1" in run.error


# --- apply_snapshot with hand-made snapshots ----------------------------------------------------


# --- failures: nothing written ------------------------------------------------------------------


def test_partial_fetch_deletes_nothing(session, sim) -> None:
    demo = arrange_demo(session, sim)
    # 150 more users make /users two pages; then the second page fails.
    for i in range(150):
        sim.control.post(
            f"/accounts/{ACCOUNT}/users",
            json={"id": f"PUX{i:04d}", "name": f"Extra {i}", "email": f"x{i}@example.com"},
        ).raise_for_status()
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    before = mirror_counts(session, demo.connection_id)
    state_before = {r: rotation_state(session, r) for r in demo.rotations.values()}
    # Upstream, a user and an override vanish — but the next fetch breaks on page 2.
    sim.control.delete(f"/accounts/{ACCOUNT}/users/PUCAROL").raise_for_status()
    sim.control.delete(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides/POPRIM1"
    ).raise_for_status()
    sim.control.post(
        "/faults",
        json={"kind": "error", "status": 500, "path_prefix": "/users", "query": {"offset": "100"}},
    ).raise_for_status()

    with count_writes() as writes:
        # "Sync now": the pass that lists the users (a scheduled one does so daily).
        result = sync.sync_connection(demo.connection_id, kind="manual", client_factory=fast_client)

    assert (result.status, result.retry) == ("failed", "transient")
    assert "PagerDuty could not be read" in result.error
    # Only the failed SyncRun and the connection's failure counter were written.
    assert sorted(" ".join(w.split()[0:3]) for w in writes) == [
        "INSERT INTO sync_runs",
        "UPDATE pagerduty_connections SET",
    ], writes
    assert mirror_counts(session, demo.connection_id) == before
    assert {r: rotation_state(session, r) for r in demo.rotations.values()} == state_before
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "connected"
    assert conn.consecutive_sync_failures == 1
    assert conn.next_sync_at > utcnow()  # backed off

    # Same for a failure on the very last request of a directory read (the v3 schedule read).
    sim.control.delete("/faults").raise_for_status()
    sim.control.post(
        "/faults", json={"kind": "error", "status": 502, "path_prefix": "/v3/schedules/PSFTSUN"}
    ).raise_for_status()
    failed = sync.sync_connection(demo.connection_id, kind="manual", client_factory=fast_client)
    assert failed.status == "failed"
    assert mirror_counts(session, demo.connection_id) == before

    # Once PagerDuty answers again, the deletions happen and the failure count resets.
    sim.control.delete("/faults").raise_for_status()
    result = sync.sync_connection(demo.connection_id, kind="manual", client_factory=fast_client)
    assert result.status == "succeeded"
    assert result.deleted > 0
    session.expire_all()
    assert session.get(PagerDutyConnection, demo.connection_id).consecutive_sync_failures == 0


def test_api_key_rejected_marks_connection_invalid(session, sim) -> None:
    demo = arrange_demo(session, sim)
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    before = mirror_counts(session, demo.connection_id)
    sim.control.post("/api_keys/demo-readonly/revoke").raise_for_status()

    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)

    assert result.status == "failed"
    assert result.retry is None
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "invalid"
    assert conn.last_error.startswith("PagerDuty rejected this API key")
    assert mirror_counts(session, demo.connection_id) == before  # last state kept
    # An invalid connection is not synced again (quietly, no SyncRun for it).
    again = sync.sync_connection(demo.connection_id, client_factory=fast_client)
    assert again.status == "unavailable"
    assert again.sync_run_id is None


def test_rate_limited_asks_for_a_retry_after_the_reset(session, sim) -> None:
    demo = arrange_demo(session, sim)
    sim.control.post("/rate_limit", json={"per_minute": 2}).raise_for_status()
    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)
    assert (result.status, result.retry) == ("failed", "rate_limited")
    assert result.retry_after is not None
    assert 0 < result.retry_after <= 60
    countdown = SYNC_RETRY.countdown(0, reset_after=result.retry_after, rng=random.Random(1))
    assert result.retry_after <= countdown <= result.retry_after + 2
    assert mirror_counts(session, demo.connection_id)["pagerduty_users"] == 0


def test_oauth_401_refreshes_once_then_needs_reauth(session, sim) -> None:
    demo = arrange_demo(session, sim, oauth=True)
    conn = session.get(PagerDutyConnection, demo.connection_id)
    access = conn.access_token
    sim.control.post("/tokens/revoke", json={"token": access}).raise_for_status()

    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)

    assert result.status == "succeeded", result  # refreshed once and fetched again
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.access_token != access
    assert result.requests == 6  # the 401 plus the five reads

    # Every token of the app revoked: the refresh is refused too.
    sim.control.post("/tokens/revoke", json={"app": "demo-oauth"}).raise_for_status()
    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)
    assert result.status == "failed"
    assert result.retry is None
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "needs_reauth"


# --- fencing ------------------------------------------------------------------------------------


def _hooked(hook: Any, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A client factory; ``hook`` runs after the snapshot is read and before it is applied."""
    for name in ("read_snapshot", "read_check"):  # the directory read and the on-call check
        real = getattr(sync, name)

        def read_then_hook(*args: Any, _real: Any = real, **kwargs: Any) -> AccountSnapshot:
            snap = _real(*args, **kwargs)
            hook()
            return snap

        monkeypatch.setattr(sync, name, read_then_hook)
    return fast_client


def _set(connection_id: uuid.UUID, **values: Any) -> None:
    from workers.core.db import transaction

    with transaction() as s:
        s.execute(
            update(PagerDutyConnection)
            .where(PagerDutyConnection.id == connection_id)
            .values(**values)
        )


@pytest.mark.parametrize(
    "change",
    [
        {"generation": PagerDutyConnection.generation + 1},  # credential replaced / reconnected
        {"status": "needs_reauth"},
        {"status": "invalid"},
        {"status": "disconnecting", "generation": PagerDutyConnection.generation + 1},
        {"status": "validating"},
    ],
    ids=["generation", "needs_reauth", "invalid", "disconnecting", "validating"],
)
def test_fencing_writes_nothing_when_the_connection_changed_mid_sync(
    session, sim, change, monkeypatch
) -> None:
    demo = arrange_demo(session, sim)
    factory = _hooked(lambda: _set(demo.connection_id, **change), monkeypatch)
    with count_writes() as writes:
        result = sync.sync_connection(demo.connection_id, client_factory=factory)
    assert result.status == "skipped"
    # The hook's own UPDATE, then only the skipped SyncRun.
    assert [w.split()[0:3] for w in writes] == [
        ["UPDATE", "pagerduty_connections", "SET"],
        ["INSERT", "INTO", "sync_runs"],
    ], writes
    assert sum(mirror_counts(session, demo.connection_id).values()) == 0
    for rid in demo.rotations.values():
        assert rotation_state(session, rid) == ([], set())
    run = session.get(SyncRun, uuid.UUID(result.sync_run_id))
    assert run.status == "skipped"
    assert "nothing was written" in run.error


def test_disconnect_during_a_sync_wins(session, sim, monkeypatch) -> None:
    from workers.disconnect.transaction import disconnect_connection as disconnect

    demo = arrange_demo(session, sim)
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUERIN1", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()
    outcome = {}
    factory = _hooked(lambda: outcome.setdefault("d", disconnect(demo.connection_id)), monkeypatch)

    result = sync.sync_connection(demo.connection_id, client_factory=factory)

    assert outcome["d"].status == "disconnected"
    assert result.status == "skipped"
    assert sum(mirror_counts(session, demo.connection_id).values()) == 0
    for rid in demo.rotations.values():
        rot = session.get(Rotation, rid)
        session.refresh(rot)
        assert rot.mode == "manual"
        assert rot.pagerduty_schedule_id is None
    # Erin's override did not reach the (now manual) rotation.
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["erin"] not in duty
    assert demo.members["dave"] in duty
    # And a sync of the disconnected connection stops before calling PagerDuty.
    assert sync.sync_connection(demo.connection_id).status == "unavailable"


# --- coalescing ---------------------------------------------------------------------------------


def test_concurrent_requests_coalesce_into_one_extra_pass(
    session, sim, redis_client, monkeypatch
) -> None:
    demo = arrange_demo(session, sim)
    in_fetch = threading.Event()
    release = threading.Event()
    calls = []

    def hook() -> None:
        calls.append(1)
        if len(calls) == 1:
            in_fetch.set()
            assert release.wait(10)

    factory = _hooked(hook, monkeypatch)
    results: dict[str, Any] = {}
    holder = threading.Thread(
        target=lambda: results.setdefault(
            "holder", sync.sync_connection(demo.connection_id, client_factory=factory)
        )
    )
    holder.start()
    assert in_fetch.wait(10)
    # Three "sync now"s while the holder is mid-fetch (the API records the request on the row,
    # workers.sync.request): none waits, none runs; one rerun covers all, and is recorded.
    _set(demo.connection_id, sync_requested_at=utcnow())
    others = [
        sync.sync_connection(demo.connection_id, kind="manual", client_factory=factory)
        for _ in range(3)
    ]
    release.set()
    holder.join(20)

    assert [o.status for o in others] == ["coalesced"] * 3
    assert results["holder"].status == "succeeded"
    assert results["holder"].passes == 2  # the original pass plus one for the three requests
    assert len(calls) == 2
    session.rollback()
    runs = session.scalar(
        select(func.count()).select_from(SyncRun).where(SyncRun.connection_id == demo.connection_id)
    )
    assert runs == 2


# --- fan-out ------------------------------------------------------------------------------------


def test_unknown_connection_is_unavailable_without_a_sync_run(session, db) -> None:
    result = sync.sync_connection(uuid.uuid4())
    assert result.status == "unavailable"
    assert session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_sync_run_times_are_utc(session, sim) -> None:
    demo = arrange_demo(session, sim, bind={})
    moment = datetime(2030, 1, 1, 12, tzinfo=UTC)
    result = sync.sync_connection(
        demo.connection_id, client_factory=fast_client, now=lambda: moment
    )
    run = session.get(SyncRun, uuid.UUID(result.sync_run_id))
    assert run.started_at == moment
    assert run.finished_at.tzinfo is not None
    assert run.duration_ms is not None
    assert run.duration_ms >= 0


# --- PagerDuty as it really behaves ---------------------------------------------------------------


def test_v3_refused_keeps_v2_syncing_and_the_v3_rotation_its_state(session, sim) -> None:
    """A 402 (an ability) on /v3/schedules must not stop the layer-based schedules: their
    rotations follow PagerDuty, the v3-bound rotation keeps its people, and the admin is told."""
    demo = arrange_demo(session, sim)
    assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
        "succeeded"
    )
    fts_before = rotation_state(session, demo.rotations["fts"])
    sim.control.patch(
        f"/accounts/{ACCOUNT}", json={"required_abilities": {"/v3/schedules": "v3_schedules"}}
    ).raise_for_status()
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/PSPRIMA/overrides",
        json={"user_id": "PUFRANK", "start": "now-1m", "duration_seconds": 600},
    ).raise_for_status()

    # The v3 list is directory data: a "sync now" reads it.
    result = sync.sync_connection(demo.connection_id, kind="manual", client_factory=fast_client)

    assert result.status == "succeeded"
    assert "shift-based (v3) schedules" in result.error
    assert "HTTP 402" in result.error
    assert "fts rotation" in result.error
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["frank"] in duty  # v2 kept syncing
    assert rotation_state(session, demo.rotations["fts"]) == fts_before
    session.rollback()
    assert (
        session.scalar(
            select(PagerDutySchedule.version).where(
                PagerDutySchedule.connection_id == demo.connection_id,
                PagerDutySchedule.pagerduty_id == "PSFTSUN",
            )
        )
        == "v3"
    )  # the mirrored v3 schedule is kept, not deleted
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "connected"


def test_a_deleted_user_on_call_is_shown_inactive_and_never_on_duty(session, sim) -> None:
    demo = arrange_demo(session, sim, bind={"primary": "PSPRIMA"})
    # Dave is on call in Primary through the demo override; then he is deleted in PagerDuty.
    sim.control.delete(f"/accounts/{ACCOUNT}/users/PUDAVE1").raise_for_status()

    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)

    assert result.status == "succeeded"
    _, duty = rotation_state(session, demo.rotations["primary"])
    assert demo.members["dave"] not in duty
    dave = session.execute(
        select(PagerDutyUser).where(
            PagerDutyUser.connection_id == demo.connection_id,
            PagerDutyUser.pagerduty_id == "PUDAVE1",
        )
    ).scalar_one()
    assert (dave.active, dave.member_id, dave.email) == (False, None, None)
    from workers.connections.status import connection_status
    from workers.rotations.views import list_rotations

    [primary] = [r for r in list_rotations(session, demo.workspace_id) if r.mode == "pagerduty"]
    assert {u.pagerduty_user_id: u.active for u in primary.unmatched_on_call} == {"PUDAVE1": False}
    status = connection_status(session, demo.workspace_id)
    assert status.inactive_users == 1
    assert "(1 inactive in PagerDuty)" in status.linked_summary

"""The batch's own SQL on both databases: the plan's three statements route each connection and
gather what its check needs; the quiet record is one fenced UPDATE and inserts nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from models import (
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    RotationMode,
    ScheduledHandoff,
    SyncRun,
)
from tests.support import factories
from tests.support.sync import count_statements
from workers.connections.tokens import ConnectionCredential
from workers.pagerduty.records import Credential
from workers.sync import batch
from workers.sync.batch_plan import KnownUser, Route, add_named_users, plan_batch
from workers.sync.records import RunContext

pytestmark = pytest.mark.both_databases

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


def _connection(session: Any, **values: Any) -> tuple[PagerDutyConnection, Any]:
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws)
    conn.directory_read_at = T0 - timedelta(seconds=60)
    for name, value in values.items():
        setattr(conn, name, value)
    return conn, ws


def _bound(session: Any, conn: PagerDutyConnection, ws: Any, sid: str, version: str) -> Any:
    rot = factories.rotation(session, ws)
    rot.mode = RotationMode.PAGERDUTY
    rot.pagerduty_schedule_id = sid
    rot.last_synced_at = T0
    session.add(
        PagerDutySchedule(connection_id=conn.id, pagerduty_id=sid, name=sid, version=version)
    )
    return rot


def test_the_plan_routes_each_connection_and_gathers_its_check_in_five_statements(
    session,
) -> None:
    checked, ws = _connection(session)
    rot = _bound(session, checked, ws, "PSV3", "v3")
    member = factories.member(session, ws)
    session.add_all(
        [
            PagerDutyUser(
                connection_id=checked.id, pagerduty_id="PUANN", name="Ann", member_id=member.id
            ),
            PagerDutyUser(connection_id=checked.id, pagerduty_id="PUOLD", name="Old", active=False),
            PagerDutyScheduleMember(
                connection_id=checked.id, schedule_pagerduty_id="PSV3", user_pagerduty_id="PUANN"
            ),
        ]
    )
    directory_due, _ = _connection(session, directory_read_at=None)
    asked, _ = _connection(session, sync_requested_at=T0 - timedelta(seconds=1))
    gone, _ = _connection(session, status=ConnectionStatus.DISCONNECTED.value)
    session.commit()

    with count_statements() as statements:
        found = plan_batch([checked.id, directory_due.id, asked.id, gone.id], now=T0)
    plans = {p.cid: p for p in found}

    assert len([s for s in statements if s.startswith("SELECT")]) == 5, statements

    assert {cid: p.route for cid, p in plans.items()} == {
        checked.id: Route.CHECK,
        directory_due.id: Route.SINGLE,
        asked.id: Route.SINGLE,
        gone.id: Route.UNAVAILABLE,
    }
    plan = plans[checked.id]
    assert plan.cred is not None
    assert plan.cred.credential.secret == "u+testkey"  # decrypted for the read, never stored
    assert [(r.rotation_id, r.schedule_id, r.never_synced) for r in plan.rotations] == [
        (rot.id, "PSV3", False)
    ]
    assert plan.read.bound == {"PSV3"}
    assert plan.read.v3_bound == {"PSV3"}
    assert plan.users == {"PUANN": KnownUser(True, member.id)}

    # Someone the check named beyond the schedule's members: looked up for the whole batch.
    add_named_users({checked.id: {"PUOLD", "PUNEW"}}, plans)
    assert plan.users["PUOLD"] == KnownUser(False, None)
    assert "PUNEW" not in plan.users  # new: the single pass reads the directory for them


def _quiet_read(conn: PagerDutyConnection, generation: int) -> batch.CheckRead:
    ctx = RunContext(conn.id, "scheduled", None, T0, time.monotonic())
    ctx.generation = generation
    cred = ConnectionCredential(
        conn.id, conn.workspace_id, generation, "api_key", "", Credential("api_key", "x"), None
    )
    plan = batch.CheckPlan(conn.id, Route.CHECK, "connected", cred)
    return batch.CheckRead(plan, ctx)


def test_the_plan_keeps_the_mirror_s_shifts_and_every_handoff_row_in_the_same_statements(
    session,
) -> None:
    """What a window read in full is compared with (workers.sync.batch_confirm): the stored
    "now" is the latest due handoff, and the rows due or ahead are all there, with shifts."""
    conn, ws = _connection(session)
    rot = _bound(session, conn, ws, "PSUNUSE", "v2")
    session.flush()
    session.add(
        PagerDutyOnCall(
            connection_id=conn.id,
            schedule_pagerduty_id="PSUNUSE",
            user_pagerduty_id="PUANN",
            starts_at=T0 - timedelta(hours=4),
            ends_at=T0 - timedelta(minutes=5),
        )
    )
    for at, who in ((T0 - timedelta(minutes=5), "PUBOB"), (T0 + timedelta(hours=2), "PUCAT")):
        session.add(
            ScheduledHandoff(
                rotation_id=rot.id, connection_id=conn.id, generation=conn.generation,
                schedule_id="PSUNUSE", at=at, user_ids=[who], shifts=[[who, None, None]],
            )
        )  # fmt: skip
    session.commit()

    with count_statements() as statements:
        (plan,) = plan_batch([conn.id], now=T0)

    assert len([s for s in statements if s.startswith("SELECT")]) == 5, statements
    assert plan.stored == {"PSUNUSE": frozenset({"PUBOB"})}  # the due handoff wins
    assert plan.spans == {
        "PSUNUSE": {"PUANN": (T0 - timedelta(hours=4), T0 - timedelta(minutes=5))}
    }
    assert [(at, ids, shifts) for _id, at, ids, _gen, _sid, shifts in plan.handoffs[rot.id]] == [
        (T0 - timedelta(minutes=5), ["PUBOB"], [["PUBOB", None, None]]),
        (T0 + timedelta(hours=2), ["PUCAT"], [["PUCAT", None, None]]),
    ]


def test_quiet_checks_are_one_fenced_update_and_no_row(session) -> None:
    current, _ = _connection(session)
    moved, _ = _connection(session)
    session.commit()
    runs = session.scalar(select(func.count()).select_from(SyncRun))

    batch._record_quiet(
        [_quiet_read(current, current.generation), _quiet_read(moved, moved.generation - 1)]
    )

    session.expire_all()
    assert session.get(PagerDutyConnection, current.id).last_checked_at == T0
    assert session.get(PagerDutyConnection, current.id).last_check_requests == 0
    assert session.get(PagerDutyConnection, moved.id).last_checked_at is None  # fenced out
    assert session.scalar(select(func.count()).select_from(SyncRun)) == runs

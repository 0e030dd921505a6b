"""Helpers the sync, disconnect and event tests share: the demo workspace bound to the simulator's
account, hand-made snapshots, and ways to read back what a sync committed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
    RotationMember,
    RotationMode,
    RotationOnDuty,
    utcnow,
)
from tests.support import factories
from tests.support.stack import demo_api_key, demo_oauth_app
from workers.connections.tokens import ConnectionCredential
from workers.core.db import get_engine
from workers.handoffs.bound import set_schedules
from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.records import Schedule, Shift, Timeline, User, UserRef
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync import apply

ACCOUNT = "acme"
# Demo members; Alice's address is stored with other case and spaces on purpose.
DEMO_EMAILS = {
    "alice": "  Alice@Example.COM ",
    "bob": "bob@example.com",
    "carol": "carol@example.com",
    "dave": "dave@example.com",
    "erin": "erin@example.com",
    "frank": "frank@example.com",
}
PD_USER = {
    "alice": "PUALICE",
    "bob": "PUBOB01",
    "carol": "PUCAROL",
    "dave": "PUDAVE1",
    "erin": "PUERIN1",
    "frank": "PUFRANK",
}
MIRROR = (PagerDutyUser, PagerDutySchedule, PagerDutyScheduleMember, PagerDutyOnCall)


@dataclass
class Demo:
    workspace_id: uuid.UUID
    connection_id: uuid.UUID
    members: dict[str, uuid.UUID]
    rotations: dict[str, uuid.UUID]
    manual_rotation: uuid.UUID
    extra: dict[str, Any] = field(default_factory=dict)


def arrange_demo(
    session: Session,
    sim: Any,
    *,
    bind: dict[str, str] | None = None,
    oauth: bool = False,
) -> Demo:
    """A workspace with the demo people, a connected PagerDuty connection and bound rotations.

    Committed, so workers (and other sessions) see it.
    """
    if bind is None:
        bind = {"primary": "PSPRIMA", "secondary": "PSSECON", "fts": "PSFTSUN"}
    ws = factories.workspace(session)
    members = {
        name: factories.member(session, ws, email=email, display_name=name.title())
        for name, email in DEMO_EMAILS.items()
    }
    if oauth:
        conn = oauth_connection(session, ws, sim)
    else:
        conn = factories.api_key_connection(
            session, ws, api_key=demo_api_key(sim), by=members["alice"]
        )
    rotations = {}
    several: dict[uuid.UUID, list[str]] = {}
    for name, schedule_id in bind.items():
        # "PSPRIMA,PSSECON": a rotation following several schedules (the first is the column).
        ids = schedule_id.split(",")
        rot = factories.rotation(session, ws, name=f"{name} rotation")
        rot.mode = RotationMode.PAGERDUTY
        rot.pagerduty_schedule_id = ids[0]
        rot.bound_at = utcnow()
        rotations[name] = rot.id
        if len(ids) > 1:
            several[rot.id] = ids
    session.flush()
    for rid, ids in several.items():
        set_schedules(session, rid, ids)
    manual = factories.rotation(
        session, ws, members=[members["alice"], members["bob"]], name="hand-made"
    )
    session.flush()
    session.add(RotationOnDuty(rotation_id=manual.id, member_id=members["bob"].id))
    session.commit()
    return Demo(
        workspace_id=ws.id,
        connection_id=conn.id,
        members={k: m.id for k, m in members.items()},
        rotations=rotations,
        manual_rotation=manual.id,
    )


def oauth_connection(session: Session, ws: Any, sim: Any) -> PagerDutyConnection:
    """An OAuth connection holding real simulator tokens (issued straight from its state)."""
    app_info = demo_oauth_app(sim)
    app = sim.state.apps_by_label[app_info["label"]]
    access, refresh = sim.state.issue_tokens(app, app.authorize_as, list(app.scopes))
    conn = PagerDutyConnection(
        id=uuid.uuid4(),
        workspace_id=ws.id,
        auth_method=AuthMethod.OAUTH,
        region="us",
        status=ConnectionStatus.CONNECTED,
        oauth_client_id=app.client_id,
        oauth_client_secret=app.client_secret,
        access_token=access.value,
        refresh_token=refresh.value,
        access_token_expires_at=utcnow() + timedelta(hours=20),
        token_refreshed_at=utcnow(),
        granted_scopes=" ".join(sorted(app.scopes)),
        connected_at=utcnow(),
    )
    session.add(conn)
    session.flush()
    return conn


def fast_client(cred: ConnectionCredential) -> PagerDutyClient:
    """No retries inside the client: a fault reaches the sync at once (no test sleeps)."""
    return PagerDutyClient(cred.api_base_url, cred.credential, max_retries=0)


def on_call(sim: Any, schedule_id: str, account: str = ACCOUNT) -> set[str]:
    resp = sim.control.get(f"/accounts/{account}/schedules/{schedule_id}/oncall")
    resp.raise_for_status()
    return set(resp.json()["user_ids"])


def rotation_state(session: Session, rotation_id: uuid.UUID) -> tuple[list[uuid.UUID], set]:
    """(members in order, on-duty member ids) as committed."""
    session.rollback()
    members = list(
        session.execute(
            select(RotationMember.member_id)
            .where(RotationMember.rotation_id == rotation_id)
            .order_by(RotationMember.position)
        ).scalars()
    )
    duty = set(
        session.execute(
            select(RotationOnDuty.member_id).where(RotationOnDuty.rotation_id == rotation_id)
        ).scalars()
    )
    return members, duty


def mirror_counts(session: Session, connection_id: uuid.UUID) -> dict[str, int]:
    session.rollback()
    return {
        m.__tablename__: session.scalar(
            select(func.count()).select_from(m).where(m.connection_id == connection_id)
        )
        for m in MIRROR
    }


def expected_members(demo: Demo, pd_ids: set[str] | list[str]) -> Any:
    by_pd = {pd: demo.members[name] for name, pd in PD_USER.items()}
    if isinstance(pd_ids, list):
        return [by_pd[p] for p in pd_ids if p in by_pd]
    return {by_pd[p] for p in pd_ids if p in by_pd}


@contextmanager
def count_statements(heads: tuple[str, ...] | None = None) -> Iterator[list[str]]:
    """Every statement (or those starting with one of ``heads``) this thread sends to the
    database while the block runs.

    This thread's only: the outbox's fast path publishes what an earlier commit wrote from a
    thread of its own (marking rows published), which is not a write of the code measured.
    """
    engine = get_engine()
    seen: list[str] = []
    me = threading.get_ident()

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if (heads is None or head in heads) and threading.get_ident() == me:
            seen.append(" ".join(statement.split())[:120])

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def count_writes() -> Any:
    """Every INSERT/UPDATE/DELETE this thread sends to the database while the block runs."""
    return count_statements(("INSERT", "UPDATE", "DELETE"))


def fixed_clock(moment: datetime | None = None):  # type: ignore[no-untyped-def]
    moment = moment or utcnow().replace(microsecond=0)
    return lambda: moment


@dataclass(frozen=True)
class Sched:
    """A schedule as a hand-made snapshot states it: members, and who is on call now."""

    id: str
    name: str
    version: str
    time_zone: str
    members: tuple[str, ...]
    on_call: tuple[str, ...]


# Shifts of hand-made snapshots started long ago and do not end: stable across applies.
SHIFT_START = datetime(2020, 1, 1, tzinfo=UTC)


def snapshot_of(users: list[User], schedules: list[Sched]) -> AccountSnapshot:
    now = utcnow()
    return AccountSnapshot(
        fetched_at=now,
        users=tuple(users),
        users_complete=True,
        schedules=tuple(
            Schedule(s.id, s.name, s.version, s.time_zone, tuple(UserRef(u) for u in s.members))  # type: ignore[arg-type]
            for s in schedules
        ),
        timelines={
            s.id: Timeline(
                s.id,
                now,
                now + timedelta(hours=1),
                tuple(Shift(s.id, UserRef(u), SHIFT_START, None) for u in s.on_call),
            )
            for s in schedules
        },
        requests_made=3,
    )


def apply_snapshot(
    session: Session, connection_id: uuid.UUID, snap: AccountSnapshot
) -> apply.ApplyResult:
    session.rollback()
    with session.begin():
        conn = session.get(PagerDutyConnection, connection_id, with_for_update=True)
        return apply.apply_snapshot(session, conn, snap, now=utcnow())


@pytest.fixture
def small(session: Session) -> Demo:
    ws = factories.workspace(session)
    members = {
        "ann": factories.member(session, ws, email="ann@example.com"),
        "ben": factories.member(session, ws, email="Ben@Example.com"),
        "cy": factories.member(session, ws, email="cy@example.com"),
    }
    conn = factories.api_key_connection(session, ws)
    rot = factories.rotation(session, ws, name="bound")
    rot.mode, rot.pagerduty_schedule_id, rot.bound_at = "pagerduty", "PS1", utcnow()
    session.commit()
    return Demo(ws.id, conn.id, {k: m.id for k, m in members.items()}, {"bound": rot.id}, rot.id)

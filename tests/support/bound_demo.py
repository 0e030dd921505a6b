"""The demo account's Primary schedule bound to a rotation, over the real stack: the
arrangement the handoff loop and on-call report stack tests share (members Erin and Frank,
an admin with an API token), and overrides placed through the simulator's control API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from api_stub.auth import issue_token
from models import Role, RotationMode, utcnow
from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.stack import demo_api_key

ACCOUNT = "acme"
SCHEDULE = "PSPRIMA"


@dataclass
class Arranged:
    workspace_id: uuid.UUID
    connection_id: uuid.UUID
    rotation_id: uuid.UUID
    headers: dict[str, str]


def arrange(session: Session, sim: SimulatorHandle, admin_email: str) -> Arranged:
    """A workspace (admin Ada, members Erin and Frank) connected to the demo account, with a
    rotation "Primary" bound to its Primary schedule."""
    ws = factories.workspace(session)
    admin = factories.member(session, ws, admin_email, Role.ADMIN, display_name="Ada")
    for name in ("erin", "frank"):
        factories.member(session, ws, f"{name}@example.com", display_name=name.title())
    conn = factories.api_key_connection(session, ws, api_key=demo_api_key(sim), by=admin)
    rot = factories.rotation(session, ws, name="Primary")
    rot.mode, rot.pagerduty_schedule_id, rot.bound_at = RotationMode.PAGERDUTY, SCHEDULE, utcnow()
    session.commit()
    token = issue_token(ws.id, admin.id, admin.role)
    return Arranged(ws.id, conn.id, rot.id, {"Authorization": f"Bearer {token}"})


def override(
    sim: SimulatorHandle,
    user_id: str,
    start: datetime,
    end: datetime,
    schedule: str = SCHEDULE,
) -> None:
    """``user_id`` on call in ``schedule`` over ``[start, end)`` (overrides beat layers)."""
    sim.control.post(
        f"/accounts/{ACCOUNT}/schedules/{schedule}/overrides",
        json={"user_id": user_id, "start": start.isoformat(), "end": end.isoformat()},
    ).raise_for_status()

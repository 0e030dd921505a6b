"""Rows the benchmarks share: a workspace with an admin and members, connected to PagerDuty with
an API key, and one rotation bound to a schedule."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class BoundWorkspace:
    workspace_id: uuid.UUID
    admin_id: uuid.UUID
    connection_id: uuid.UUID
    rotation_id: uuid.UUID


def bound_workspace(
    session: Session,
    *,
    name: str,
    api_key: str,
    schedule_id: str,
    people: Iterable[tuple[str, str]],
) -> BoundWorkspace:
    """``people``: (email, display name) of the members besides the admin."""
    from models import (
        AuthMethod,
        ConnectionStatus,
        Member,
        PagerDutyConnection,
        Role,
        Rotation,
        RotationMode,
        Workspace,
        utcnow,
    )

    ws = Workspace(name=name)
    session.add(ws)
    session.flush()
    admin = Member(
        workspace_id=ws.id,
        email="admin@bench.test",
        email_key="admin@bench.test",
        display_name="Admin",
        role=Role.ADMIN,
    )
    session.add(admin)
    for email, display_name in people:
        session.add(
            Member(
                workspace_id=ws.id, email=email, email_key=email.lower(), display_name=display_name
            )
        )
    conn = PagerDutyConnection(
        workspace_id=ws.id,
        auth_method=AuthMethod.API_KEY,
        region="us",
        status=ConnectionStatus.CONNECTED,
        api_key=api_key,
        connected_at=utcnow(),
    )
    rot = Rotation(
        workspace_id=ws.id,
        name="Primary",
        mode=RotationMode.PAGERDUTY,
        pagerduty_schedule_id=schedule_id,
        bound_at=utcnow(),
    )
    session.add_all([conn, rot])
    session.flush()
    return BoundWorkspace(ws.id, admin.id, conn.id, rot.id)


@dataclass(frozen=True)
class FreshWorkspace:
    workspace_id: uuid.UUID
    admin_id: uuid.UUID
    rotation_id: uuid.UUID


def fresh_workspace(
    session: Session, *, name: str, people: Iterable[tuple[str, str]]
) -> FreshWorkspace:
    """A workspace not connected to PagerDuty: an admin, ``people`` and one Manual rotation."""
    from models import Member, Role, Rotation, Workspace

    ws = Workspace(name=name)
    session.add(ws)
    session.flush()
    admin = Member(
        workspace_id=ws.id,
        email="admin@bench.test",
        email_key="admin@bench.test",
        display_name="Admin",
        role=Role.ADMIN,
    )
    session.add(admin)
    for email, display_name in people:
        session.add(
            Member(
                workspace_id=ws.id, email=email, email_key=email.lower(), display_name=display_name
            )
        )
    rot = Rotation(workspace_id=ws.id, name="Primary")
    session.add(rot)
    session.flush()
    return FreshWorkspace(ws.id, admin.id, rot.id)

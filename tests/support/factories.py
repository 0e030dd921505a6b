"""Small factories that build valid rows with sensible defaults; tests override what matters."""

from __future__ import annotations

import itertools
import uuid

from sqlalchemy.orm import Session

from models import (
    AuthMethod,
    ConnectionStatus,
    Member,
    PagerDutyConnection,
    Role,
    Rotation,
    RotationMember,
    Workspace,
    utcnow,
)

_seq = itertools.count(1)


def workspace(session: Session, name: str | None = None) -> Workspace:
    ws = Workspace(name=name or f"Workspace {next(_seq)}")
    session.add(ws)
    session.flush()
    return ws


def member(
    session: Session,
    ws: Workspace,
    email: str | None = None,
    role: Role = Role.MEMBER,
    display_name: str | None = None,
) -> Member:
    n = next(_seq)
    m = Member(
        workspace_id=ws.id,
        email=email or f"person{n}@example.com",
        display_name=display_name or f"Person {n}",
        role=role.value,
    )
    session.add(m)
    session.flush()
    return m


def rotation(
    session: Session, ws: Workspace, members: list[Member] = (), name: str | None = None
) -> Rotation:  # type: ignore[assignment]
    r = Rotation(workspace_id=ws.id, name=name or f"Rotation {next(_seq)}")
    session.add(r)
    session.flush()
    for position, m in enumerate(members):
        session.add(RotationMember(rotation_id=r.id, member_id=m.id, position=position))
    session.flush()
    return r


def api_key_connection(
    session: Session,
    ws: Workspace,
    api_key: str = "u+testkey",
    status: ConnectionStatus = ConnectionStatus.CONNECTED,
    region: str = "us",
    by: Member | None = None,
) -> PagerDutyConnection:
    conn = PagerDutyConnection(
        id=uuid.uuid4(),
        workspace_id=ws.id,
        auth_method=AuthMethod.API_KEY,
        region=region,
        status=status.value,
        api_key=api_key,
        connected_by_member_id=by.id if by else None,
        connected_at=utcnow(),
    )
    session.add(conn)
    session.flush()
    return conn

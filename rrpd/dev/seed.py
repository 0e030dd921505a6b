"""The demo workspace ``rrpd run`` starts with, matching the simulator's demo scenario.

Idempotent: the workspace is found by name, members by email, rotations by name; whatever is
missing is added and nothing that exists is changed (a rotation bound in an earlier run stays
bound). Members' emails match the demo PagerDuty account's users, so syncs link them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Member, Role, Rotation, RotationMember, Workspace, normalize_email

WORKSPACE_NAME = "Acme"

# (display name, email, role). Gina has no PagerDuty account: she stays unlinked.
MEMBERS: tuple[tuple[str, str, Role], ...] = (
    ("Alice", "alice@example.com", Role.PRIMARY_OWNER),
    ("Bob", "bob@example.com", Role.ADMIN),
    ("Carol", "carol@example.com", Role.MEMBER),
    ("Dave", "dave@example.com", Role.MEMBER),
    ("Erin", "erin@example.com", Role.MEMBER),
    ("Frank", "frank@example.com", Role.MEMBER),
    ("Gina (no PagerDuty account)", "gina@example.com", Role.MEMBER),
)

# Rotation name -> member emails in rotation order. The first three are meant to be bound to
# the demo schedules (PSPRIMA, PSSECON, PSFTSUN); "Front Desk" stays Manual.
ROTATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Primary", ("alice@example.com", "bob@example.com", "carol@example.com")),
    ("Secondary", ("bob@example.com", "carol@example.com", "dave@example.com")),
    ("Follow-the-Sun", ("erin@example.com", "frank@example.com")),
    ("Front Desk", ("carol@example.com", "gina@example.com")),
)

# Which demo schedule each rotation is meant for (used by ``rrpd demo``).
DEMO_BINDINGS: dict[str, str] = {
    "Primary": "PSPRIMA",
    "Secondary": "PSSECON",
    "Follow-the-Sun": "PSFTSUN",
}
MANUAL_ONLY = "Front Desk"


@dataclass
class Seeded:
    workspace_id: uuid.UUID
    members: dict[str, uuid.UUID] = field(default_factory=dict)  # email -> member id
    rotations: dict[str, uuid.UUID] = field(default_factory=dict)  # name -> rotation id
    created: list[str] = field(default_factory=list)  # what this call added


def seed_demo(session: Session) -> Seeded:
    """Add whatever of the demo workspace is missing. The caller commits."""
    ws = (
        session.execute(
            select(Workspace).where(Workspace.name == WORKSPACE_NAME).order_by(Workspace.created_at)
        )
        .scalars()
        .first()
    )
    created: list[str] = []
    if ws is None:
        ws = Workspace(name=WORKSPACE_NAME)
        session.add(ws)
        session.flush()
        created.append(f"workspace {WORKSPACE_NAME}")
    out = Seeded(workspace_id=ws.id, created=created)

    existing = {
        m.email_key: m
        for m in session.execute(select(Member).where(Member.workspace_id == ws.id)).scalars()
    }
    for name, email, role in MEMBERS:
        member = existing.get(normalize_email(email))
        if member is None:
            member = Member(workspace_id=ws.id, email=email, display_name=name, role=role)
            session.add(member)
            session.flush()
            created.append(f"member {email} ({role.value})")
        out.members[email] = member.id

    rotations = {
        r.name: r
        for r in session.execute(select(Rotation).where(Rotation.workspace_id == ws.id)).scalars()
    }
    for name, emails in ROTATIONS:
        rotation = rotations.get(name)
        if rotation is None:
            rotation = Rotation(workspace_id=ws.id, name=name)
            session.add(rotation)
            session.flush()
            for position, email in enumerate(emails):
                session.add(
                    RotationMember(
                        rotation_id=rotation.id, member_id=out.members[email], position=position
                    )
                )
            session.flush()
            created.append(f"rotation {name}")
        out.rotations[name] = rotation.id
    return out


def seed(url: str | None = None) -> Seeded:
    """Seed the configured database in one transaction."""
    from workers.core.db import transaction

    with transaction(url) as session:
        return seed_demo(session)

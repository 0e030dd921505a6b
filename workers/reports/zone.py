"""The workspace's time zone: where the on-call report's business hours and weekends are."""

from __future__ import annotations

import uuid
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuditAction, Workspace
from workers.core.access import Actor, Invalid, Missing, require_manager
from workers.core.audit import audit

DEFAULT_ZONE = "UTC"


@cache
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


@cache
def known_zones() -> tuple[str, ...]:
    """Every IANA name this machine knows, sorted (the panel offers them)."""
    return tuple(sorted(_known()))


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``Europe/Paris``), or ``Invalid`` saying what is wrong."""
    name = (name or "").strip()
    # Only the database's names: ZoneInfo alone would also open a file path given to it.
    if name not in _known():
        raise Invalid(
            f"Unknown time zone {name[:64]!r}: use an IANA name such as 'Europe/Paris' or "
            "'America/New_York'.",
            code="unknown_time_zone",
        )
    return ZoneInfo(name)


def workspace_zone(session: Session, workspace_id: uuid.UUID) -> str:
    zone = session.execute(
        select(Workspace.time_zone).where(Workspace.id == workspace_id)
    ).scalar_one_or_none()
    if zone is None:
        raise Missing("No such workspace.", code="workspace_not_found")
    return zone


def set_workspace_zone(session: Session, actor: Actor, name: str) -> str:
    """Set the workspace's time zone (Primary Owner or Admin); returns its canonical name."""
    require_manager(actor)
    zone = zone_named(name).key
    workspace = session.execute(
        select(Workspace).where(Workspace.id == actor.workspace_id).with_for_update()
    ).scalar_one()
    if workspace.time_zone != zone:
        audit(
            session,
            workspace.id,
            AuditAction.WORKSPACE_TIME_ZONE,
            actor_member_id=actor.member_id,
            previous=workspace.time_zone,
            time_zone=zone,
        )
        workspace.time_zone = zone
    return zone

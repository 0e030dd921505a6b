"""Who is acting, what they may do, and the errors every service function raises.

The HTTP API (``api_stub``) and the panel turn a ``ServiceError`` into an answer: its ``status``
(HTTP-like), a stable machine ``code`` and a ``message`` written for a workspace admin. These
names are distinct from PagerDuty's own errors (``workers.pagerduty.errors``: ``Forbidden``,
``NotFound``...), which describe what PagerDuty answered, not what we refuse.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Member, Role


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Invalid(ServiceError):
    status = 422
    code = "invalid_request"


class Denied(ServiceError):
    status = 403
    code = "forbidden"


class Missing(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


@dataclass(frozen=True)
class Actor:
    """An authenticated workspace member; ``role`` is already the lower of token and DB."""

    workspace_id: uuid.UUID
    member_id: uuid.UUID
    role: Role

    @property
    def may_manage(self) -> bool:
        return self.role.may_manage_integrations


_ROLE_RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.PRIMARY_OWNER: 3}


def lower_role(a: Role, b: Role) -> Role:
    return a if _ROLE_RANK[a] <= _ROLE_RANK[b] else b


def resolve_actor(
    session: Session, workspace_id: uuid.UUID, member_id: uuid.UUID, claimed_role: Role
) -> Actor | None:
    """The actor for a token's claims, or None when the member is not in that workspace.

    The database is the truth for roles, but a token never grants more than it says: the
    effective role is the lower of the claimed and the stored one.
    """
    member = session.execute(
        select(Member).where(Member.id == member_id, Member.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if member is None:
        return None
    return Actor(workspace_id, member.id, lower_role(claimed_role, member.role))


def require_manager(actor: Actor) -> None:
    """Only the workspace's Primary Owner or an Admin manages the integration."""
    if not actor.may_manage:
        raise Denied(
            "Only the workspace's Primary Owner or an Admin can manage the PagerDuty integration.",
            code="role_forbidden",
        )

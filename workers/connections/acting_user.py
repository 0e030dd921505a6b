"""Which PagerDuty user an OAuth connection acts as, and that user's role: remembered at connect
from the ``/users/me`` call the login already makes (``oauth_exchange``), shown by the status
document (``acting_user``) and the panel. An API key acts as no one in particular: null."""

from __future__ import annotations

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuthMethod, PagerDutyConnection, PagerDutyUser
from workers.connections.messages import FULL_VIEW_ROLES
from workers.core.readmodel import ReadModel
from workers.pagerduty.records import User


class ActingUserOut(ReadModel):
    pagerduty_user_id: str = Field(description="The PagerDuty user id the login acts as.")
    name: str | None = Field(description="As PagerDuty's /users/me named them at connect.")
    email: str | None
    role: str | None = Field(
        description="Their PagerDuty role at connect (owner, admin, user, limited_user, "
        "observer, read_only_user, ...); null when PagerDuty did not say.",
        examples=["user"],
    )
    sees_everything: bool | None = Field(
        description="Whether that role sees every schedule and user of the account (owner, "
        "admin); null when the role is unknown."
    )


def remember(conn: PagerDutyConnection, me: User | None) -> None:
    """Keep who the login acts as (all None when ``/users/me`` could not be read)."""
    conn.acting_user_name = me.name if me is not None else None
    conn.acting_user_email = me.email if me is not None else None
    conn.acting_user_role = me.role if me is not None else None


def acting_user_document(session: Session, conn: PagerDutyConnection) -> ActingUserOut | None:
    """Who an OAuth connection acts as; None for an API key. A login connected before the user
    was remembered takes the name and email the sync mirrored (its role stays unknown: None)."""
    if conn.auth_method != AuthMethod.OAUTH or not conn.pagerduty_user_id:
        return None
    name, email, role = conn.acting_user_name, conn.acting_user_email, conn.acting_user_role
    if name is None:
        mirrored = session.scalars(
            select(PagerDutyUser).where(
                PagerDutyUser.connection_id == conn.id,
                PagerDutyUser.pagerduty_id == conn.pagerduty_user_id,
            )
        ).one_or_none()
        if mirrored is not None:
            name, email = mirrored.name, mirrored.email
    return ActingUserOut(
        pagerduty_user_id=conn.pagerduty_user_id,
        name=name,
        email=email,
        role=role,
        sees_everything=None if role is None else role in FULL_VIEW_ROLES,
    )

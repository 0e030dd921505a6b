"""Round Robin's side: workspaces, their members and rotations."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models.base import Base, Timestamps, UUIDPrimaryKey, normalize_email, utcnow
from models.types import string_enum


class Role(StrEnum):
    PRIMARY_OWNER = "primary_owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def may_manage_integrations(self) -> bool:
        return self in (Role.PRIMARY_OWNER, Role.ADMIN)


class RotationMode(StrEnum):
    MANUAL = "manual"
    PAGERDUTY = "pagerduty"


class Workspace(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200))
    # IANA zone of the on-call report's business hours and weekends (workers.reports.zone).
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")

    members: Mapped[list[Member]] = relationship(back_populates="workspace")
    rotations: Mapped[list[Rotation]] = relationship(back_populates="workspace")


class Member(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email_key"),
        CheckConstraint("role IN ('primary_owner', 'admin', 'member')", name="role"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased, trimmed copy used for matching PagerDuty users; kept in step with `email`.
    email_key: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(string_enum(Role, 20), default=Role.MEMBER)

    workspace: Mapped[Workspace] = relationship(back_populates="members")

    @validates("email")
    def _keep_email_key(self, _key: str, email: str) -> str:
        self.email_key = normalize_email(email)
        return email.strip()


class Rotation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "rotations"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("mode IN ('manual', 'pagerduty')", name="mode"),
        # A bound rotation names its schedule; a manual one names none.
        CheckConstraint(
            "(mode = 'manual' AND pagerduty_schedule_id IS NULL) OR "
            "(mode = 'pagerduty' AND pagerduty_schedule_id IS NOT NULL)",
            name="mode_matches_binding",
        ),
        Index("ix_rotations_bound", "workspace_id", "pagerduty_schedule_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[RotationMode] = mapped_column(
        string_enum(RotationMode, 20), default=RotationMode.MANUAL
    )
    # PagerDuty's schedule id (e.g. "PABC123"); the mirrored schedule is looked up by it. The
    # FIRST of the rotation's schedules: all of them (1 to 10) are in ``rotation_schedules``.
    pagerduty_schedule_id: Mapped[str | None] = mapped_column(String(64), default=None)
    bound_at: Mapped[datetime | None] = mapped_column(default=None)
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)

    workspace: Mapped[Workspace] = relationship(back_populates="rotations")
    members: Mapped[list[RotationMember]] = relationship(
        order_by="RotationMember.position", cascade="all, delete-orphan", passive_deletes=True
    )
    on_duty: Mapped[list[RotationOnDuty]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def make_manual(self) -> None:
        """Unbind, keeping members and on-duty people so the rotation goes on working by hand."""
        self.mode = RotationMode.MANUAL
        self.pagerduty_schedule_id = None
        self.bound_at = None


class RotationMember(Base):
    __tablename__ = "rotation_members"

    rotation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]

    member: Mapped[Member] = relationship(lazy="joined")


class RotationOnDuty(Base):
    """Who is on duty; several rows when PagerDuty has several people on call at once."""

    __tablename__ = "rotation_on_duty"

    rotation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    since: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship(lazy="joined")


# A rotation follows at most this many schedules of its connection (issue 22).
MAX_ROTATION_SCHEDULES = 10


class RotationSchedule(Base):
    """Every schedule a bound rotation follows, in order (position 0 is
    ``rotations.pagerduty_schedule_id``); deleted in the transaction that makes it Manual."""

    __tablename__ = "rotation_schedules"
    __table_args__ = (
        CheckConstraint(
            f"position >= 0 AND position < {MAX_ROTATION_SCHEDULES}", name="position_range"
        ),
        UniqueConstraint("rotation_id", "position"),
        # "Which rotations follow this schedule": the handoff loop and the sync ask it.
        Index("ix_rotation_schedules_schedule", "schedule_pagerduty_id"),
    )

    rotation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True
    )
    schedule_pagerduty_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int]

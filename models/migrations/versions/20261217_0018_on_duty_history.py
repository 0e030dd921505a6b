"""The on-call report's history: ``on_duty_intervals`` (who was on duty in each rotation,
interval by interval) and the workspace's time zone (docs/design.md, "On-call history").

The history starts from who is on duty at the upgrade: one open interval per ``rotation_on_duty``
row (from its ``since``) and per PagerDuty user on call for a bound rotation whom no member
matches (from their shift's start, or the upgrade's instant).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-15 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from models.clock import utcnow

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_MEMBER = "ended_at IS NULL AND member_id IS NOT NULL"
_OPEN_USER = "ended_at IS NULL AND pagerduty_user_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False)
        )
    intervals = op.create_table(
        "on_duty_intervals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("rotation_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("pagerduty_user_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at",
            name=op.f("ck_on_duty_intervals_ends_after_start"),
        ),
        sa.CheckConstraint(
            "source IN ('sync', 'handoff', 'backfill')", name=op.f("ck_on_duty_intervals_source")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_on_duty_intervals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"],
            ["rotations.id"],
            name=op.f("fk_on_duty_intervals_rotation_id_rotations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_on_duty_intervals_member_id_members"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_on_duty_intervals")),
    )
    op.create_index(
        "uq_on_duty_intervals_open_member",
        "on_duty_intervals",
        ["rotation_id", "member_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_MEMBER),
        sqlite_where=sa.text(_OPEN_MEMBER),
    )
    op.create_index(
        "uq_on_duty_intervals_open_user",
        "on_duty_intervals",
        ["rotation_id", "pagerduty_user_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN_USER),
        sqlite_where=sa.text(_OPEN_USER),
    )
    op.create_index(
        "ix_on_duty_intervals_report", "on_duty_intervals", ["workspace_id", "started_at"]
    )
    op.create_index("ix_on_duty_intervals_ended_at", "on_duty_intervals", ["ended_at"])
    op.create_index(
        "ix_on_duty_intervals_rotation", "on_duty_intervals", ["rotation_id", "ended_at"]
    )
    op.create_index(op.f("ix_on_duty_intervals_member_id"), "on_duty_intervals", ["member_id"])
    _backfill(intervals)


def _backfill(intervals: sa.Table) -> None:
    when = models.base.UTCDateTime(timezone=True)
    rotations = sa.table(
        "rotations",
        sa.column("id", sa.Uuid()),
        sa.column("workspace_id", sa.Uuid()),
        sa.column("mode", sa.String()),
        sa.column("pagerduty_schedule_id", sa.String()),
    )
    on_duty = sa.table(
        "rotation_on_duty",
        sa.column("rotation_id", sa.Uuid()),
        sa.column("member_id", sa.Uuid()),
        sa.column("since", when),
    )
    members = sa.table(
        "members",
        sa.column("id", sa.Uuid()),
        sa.column("display_name", sa.String()),
        sa.column("email", sa.String()),
    )
    conns = sa.table(
        "pagerduty_connections",
        sa.column("id", sa.Uuid()),
        sa.column("workspace_id", sa.Uuid()),
        sa.column("status", sa.String()),
    )
    oncalls = sa.table(
        "pagerduty_oncalls",
        sa.column("connection_id", sa.Uuid()),
        sa.column("schedule_pagerduty_id", sa.String()),
        sa.column("user_pagerduty_id", sa.String()),
        sa.column("starts_at", when),
    )
    users = sa.table(
        "pagerduty_users",
        sa.column("connection_id", sa.Uuid()),
        sa.column("pagerduty_id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("email", sa.String()),
        sa.column("member_id", sa.Uuid()),
    )
    bind = op.get_bind()
    now = utcnow()
    rows: list[dict[str, object]] = [
        {
            "workspace_id": wid,
            "rotation_id": rid,
            "member_id": mid,
            "name": name,
            "email": email,
            "started_at": since or now,
            "source": "backfill",
        }
        for rid, wid, mid, name, email, since in bind.execute(
            sa.select(
                rotations.c.id,
                rotations.c.workspace_id,
                members.c.id,
                members.c.display_name,
                members.c.email,
                on_duty.c.since,
            )
            .join(rotations, rotations.c.id == on_duty.c.rotation_id)
            .join(members, members.c.id == on_duty.c.member_id)
        )
    ]
    unmatched = bind.execute(
        sa.select(
            rotations.c.id,
            rotations.c.workspace_id,
            users.c.pagerduty_id,
            users.c.name,
            users.c.email,
            oncalls.c.starts_at,
        )
        .join(
            conns,
            sa.and_(
                conns.c.workspace_id == rotations.c.workspace_id, conns.c.status != "disconnected"
            ),
        )
        .join(
            oncalls,
            sa.and_(
                oncalls.c.connection_id == conns.c.id,
                oncalls.c.schedule_pagerduty_id == rotations.c.pagerduty_schedule_id,
            ),
        )
        .join(
            users,
            sa.and_(
                users.c.connection_id == conns.c.id,
                users.c.pagerduty_id == oncalls.c.user_pagerduty_id,
            ),
        )
        .where(rotations.c.mode == "pagerduty", users.c.member_id.is_(None))
    )
    rows += [
        {
            "workspace_id": wid,
            "rotation_id": rid,
            "member_id": None,
            "pagerduty_user_id": uid,
            "name": name,
            "email": email,
            # A shift's start in the future (should not be) or unknown: from the upgrade on.
            "started_at": min(starts, now) if starts else now,
            "source": "backfill",
        }
        for rid, wid, uid, name, email, starts in unmatched
    ]
    for row in rows:
        row.setdefault("pagerduty_user_id", None)
    if rows:
        op.bulk_insert(intervals, rows)


def downgrade() -> None:
    op.drop_table("on_duty_intervals")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("time_zone")

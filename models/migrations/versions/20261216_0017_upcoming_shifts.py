"""Upcoming shifts ("your shift moved", issue 22): each bound rotation's planned on-duty
intervals for the next 7 days (``rotation_upcoming``) and when the connection last read them
(``pagerduty_connections.upcoming_read_at``) (docs/sync-and-disconnect.md, "Upcoming shifts").

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-16 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(
            sa.Column("upcoming_read_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "rotation_upcoming",
        sa.Column("rotation_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("read_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_until", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("intervals", sa.JSON(), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "generation >= 1", name=op.f("ck_rotation_upcoming_generation_positive")
        ),
        sa.CheckConstraint(
            "read_until > read_from", name=op.f("ck_rotation_upcoming_window_not_empty")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["pagerduty_connections.id"],
            name=op.f("fk_rotation_upcoming_connection_id_pagerduty_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"],
            ["rotations.id"],
            name=op.f("fk_rotation_upcoming_rotation_id_rotations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rotation_id", name=op.f("pk_rotation_upcoming")),
    )
    op.create_index(
        op.f("ix_rotation_upcoming_connection_id"),
        "rotation_upcoming",
        ["connection_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rotation_upcoming_connection_id"), table_name="rotation_upcoming")
    op.drop_table("rotation_upcoming")
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_column("upcoming_read_at")

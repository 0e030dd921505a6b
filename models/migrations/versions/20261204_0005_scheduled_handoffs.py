"""Scheduled handoffs: a bound rotation's upcoming on-call changes, applied at their instant

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduled_handoffs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("rotation_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_ids", sa.JSON(), nullable=False),
        sa.Column("planned_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "generation >= 1", name=op.f("ck_scheduled_handoffs_generation_positive")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["pagerduty_connections.id"],
            name=op.f("fk_scheduled_handoffs_connection_id_pagerduty_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"],
            ["rotations.id"],
            name=op.f("fk_scheduled_handoffs_rotation_id_rotations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_handoffs")),
        sa.UniqueConstraint("rotation_id", "at", name=op.f("uq_scheduled_handoffs_rotation_id_at")),
    )
    op.create_index("ix_scheduled_handoffs_at", "scheduled_handoffs", ["at"], unique=False)
    op.create_index(
        op.f("ix_scheduled_handoffs_connection_id"),
        "scheduled_handoffs",
        ["connection_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_scheduled_handoffs_connection_id"), table_name="scheduled_handoffs")
    op.drop_index("ix_scheduled_handoffs_at", table_name="scheduled_handoffs")
    op.drop_table("scheduled_handoffs")

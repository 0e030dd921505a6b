"""Several schedules per rotation: ``rotation_schedules`` (every schedule a bound rotation
follows, position 0 = ``rotations.pagerduty_schedule_id``), and planned handoffs unique per
rotation, schedule and instant (each of a rotation's schedules has its own timeline).

Every bound rotation gets its one schedule as position 0.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-18 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "rotation_schedules",
        sa.Column("rotation_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_pagerduty_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "position >= 0 AND position < 10", name=op.f("ck_rotation_schedules_position_range")
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"],
            ["rotations.id"],
            name=op.f("fk_rotation_schedules_rotation_id_rotations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "rotation_id", "schedule_pagerduty_id", name=op.f("pk_rotation_schedules")
        ),
        sa.UniqueConstraint(
            "rotation_id", "position", name=op.f("uq_rotation_schedules_rotation_id_position")
        ),
    )
    op.create_index(
        "ix_rotation_schedules_schedule", "rotation_schedules", ["schedule_pagerduty_id"]
    )
    rotations = sa.table(
        "rotations",
        sa.column("id", sa.Uuid()),
        sa.column("mode", sa.String()),
        sa.column("pagerduty_schedule_id", sa.String()),
    )
    rows = [
        {"rotation_id": rid, "schedule_pagerduty_id": sid, "position": 0}
        for rid, sid in op.get_bind().execute(
            sa.select(rotations.c.id, rotations.c.pagerduty_schedule_id).where(
                rotations.c.mode == "pagerduty", rotations.c.pagerduty_schedule_id.is_not(None)
            )
        )
    ]
    if rows:
        op.bulk_insert(table, rows)
    with op.batch_alter_table("scheduled_handoffs") as batch:
        batch.drop_constraint("uq_scheduled_handoffs_rotation_id_at", type_="unique")
        batch.create_unique_constraint(
            "uq_scheduled_handoffs_rotation_id_schedule_id_at", ["rotation_id", "schedule_id", "at"]
        )


def downgrade() -> None:
    # A rotation's handoffs of its other schedules cannot keep (rotation, at) unique: the next
    # sync plans its one schedule again.
    op.execute(
        "DELETE FROM scheduled_handoffs WHERE schedule_id NOT IN "
        "(SELECT pagerduty_schedule_id FROM rotations "
        "WHERE rotations.id = scheduled_handoffs.rotation_id "
        "AND pagerduty_schedule_id IS NOT NULL)"
    )
    with op.batch_alter_table("scheduled_handoffs") as batch:
        batch.drop_constraint("uq_scheduled_handoffs_rotation_id_schedule_id_at", type_="unique")
        batch.create_unique_constraint(
            "uq_scheduled_handoffs_rotation_id_at", ["rotation_id", "at"]
        )
    op.drop_index("ix_rotation_schedules_schedule", table_name="rotation_schedules")
    op.drop_table("rotation_schedules")

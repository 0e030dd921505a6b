"""A replacement API key over a connected connection waits beside the live credentials as a
*pending* credential until a check proves it (docs/design.md, "Pending credentials")

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(sa.Column("pending_api_key_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending_region", sa.String(4), nullable=True))
        batch.add_column(sa.Column("pending_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("pending_generation", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pending_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending_since", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pending_drive_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("pending_drives", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_check_constraint(
            op.f("ck_pagerduty_connections_pending_status"),
            "pending_status IN ('checking', 'rejected', 'lost', 'account_change')",
        )
    op.create_index(
        "ix_pagerduty_connections_pending_drive_at", "pagerduty_connections", ["pending_drive_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_pagerduty_connections_pending_drive_at", table_name="pagerduty_connections")
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_constraint(op.f("ck_pagerduty_connections_pending_status"), type_="check")
        for column in (
            "pending_drives",
            "pending_drive_at",
            "pending_since",
            "pending_message",
            "pending_generation",
            "pending_status",
            "pending_region",
            "pending_api_key_encrypted",
        ):
            batch.drop_column(column)

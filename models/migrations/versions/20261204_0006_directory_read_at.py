"""When each connection's PagerDuty directory was last read in full; sync_runs by age

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: never read, so the connection's next sync reads the directory.
    op.add_column(
        "pagerduty_connections",
        sa.Column("directory_read_at", models.base.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_sync_runs_started", "sync_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_started", table_name="sync_runs")
    op.drop_column("pagerduty_connections", "directory_read_at")

"""When each connection's PagerDuty user directory was last listed

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: never listed, so the connection's next directory read lists the users.
    op.add_column(
        "pagerduty_connections",
        sa.Column("users_read_at", models.base.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("pagerduty_connections", "users_read_at")

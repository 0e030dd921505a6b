"""A quiet scheduled check writes no ``sync_runs`` row: the connection row keeps when it last
checked (``last_checked_at``, ``last_check_ms``, ``last_check_requests``)
(docs/sync-and-disconnect.md, "Quiet checks").

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-14 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(
            sa.Column("last_checked_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("last_check_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_check_requests", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_column("last_check_requests")
        batch.drop_column("last_check_ms")
        batch.drop_column("last_checked_at")

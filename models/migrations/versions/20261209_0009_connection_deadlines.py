"""Connections carry the deadline of the work they wait for (validating, disconnecting, a
requested "sync now"): the ``deadlines`` loop drives it again past ``drive_at``

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(sa.Column("drive_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("drives", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("sync_requested_at", UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_pagerduty_connections_drive_at", "pagerduty_connections", ["drive_at"])
    # Rows already waiting when this revision is applied get a deadline at once: the loop
    # drives them on its first round (a validation or disconnect whose message was lost).
    op.execute(
        "UPDATE pagerduty_connections SET drive_at = status_changed_at "
        "WHERE status IN ('validating', 'disconnecting')"
    )


def downgrade() -> None:
    op.drop_index("ix_pagerduty_connections_drive_at", table_name="pagerduty_connections")
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_column("sync_requested_at")
        batch.drop_column("drives")
        batch.drop_column("drive_at")

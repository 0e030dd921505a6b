"""A pending key of another PagerDuty account waits for the admin's confirmation with what a
switch would do to each bound rotation (docs/api.md, "Confirm an account change")

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(sa.Column("pending_account", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_column("pending_account")

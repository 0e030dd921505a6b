"""Who an OAuth connection acts as: the PagerDuty user's name, email and role, stored at connect
from PagerDuty's /users/me (the status document's ``acting_user``, docs/api.md)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(sa.Column("acting_user_name", sa.String(300), nullable=True))
        batch.add_column(sa.Column("acting_user_email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("acting_user_role", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        for column in ("acting_user_role", "acting_user_email", "acting_user_name"):
            batch.drop_column(column)

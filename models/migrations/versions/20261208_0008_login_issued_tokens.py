"""A login keeps the tokens PagerDuty issued until their id_token is verified

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL until the code is exchanged; encrypted like every secret column.
    op.add_column(
        "oauth_authorizations",
        sa.Column("issued_tokens_encrypted", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("oauth_authorizations") as batch_op:
        batch_op.drop_column("issued_tokens_encrypted")

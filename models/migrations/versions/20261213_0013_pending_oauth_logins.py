"""An OAuth login over a connected connection waits beside the live credentials like a
replacement API key: ``pending_auth_method`` says which kind of credential is pending
(docs/design.md, "The connection lifecycle")

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-13 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.add_column(sa.Column("pending_auth_method", sa.String(16), nullable=True))
        batch.create_check_constraint(
            op.f("ck_pagerduty_connections_pending_auth_method"),
            "pending_auth_method IN ('api_key', 'oauth')",
        )


def downgrade() -> None:
    with op.batch_alter_table("pagerduty_connections") as batch:
        batch.drop_constraint(op.f("ck_pagerduty_connections_pending_auth_method"), type_="check")
        batch.drop_column("pending_auth_method")

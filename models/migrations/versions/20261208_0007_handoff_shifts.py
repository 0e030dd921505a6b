"""Scheduled handoffs carry the shifts on call from their instant, for the on-call mirror

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL on rows planned before this revision: applied with the instant as the shifts' start
    # (the next sync writes the exact shifts, and re-plans those rows with theirs).
    op.add_column("scheduled_handoffs", sa.Column("shifts", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("scheduled_handoffs", "shifts")

"""PagerDuty as it really behaves: inactive users, connection notices, no token revocations

PagerDuty keeps deleted users on schedules as placeholders (inactive, no email); a connection
can carry a notice for the admin (e.g. the key worked in the other region); PagerDuty documents
no token-revocation endpoint, so the revocation queue goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pagerduty_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.alter_column("email", existing_type=sa.String(length=320), nullable=True)
        batch_op.alter_column("email_key", existing_type=sa.String(length=320), nullable=True)
        batch_op.create_check_constraint("inactive_unlinked", "active OR member_id IS NULL")
    with op.batch_alter_table("pagerduty_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notice", sa.Text(), nullable=True))
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_revocations_connection_id"))
    op.drop_table("token_revocations")


def downgrade() -> None:
    op.create_table(
        "token_revocations",
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["pagerduty_connections.id"],
            name=op.f("fk_token_revocations_connection_id_pagerduty_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_revocations")),
    )
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_token_revocations_connection_id"), ["connection_id"], unique=False
        )
    with op.batch_alter_table("pagerduty_connections", schema=None) as batch_op:
        batch_op.drop_column("notice")
    # Placeholders have no email; they cannot survive the NOT NULL columns of the old schema.
    op.execute("DELETE FROM pagerduty_users WHERE email IS NULL OR NOT active")
    with op.batch_alter_table("pagerduty_users", schema=None) as batch_op:
        batch_op.drop_constraint("inactive_unlinked", type_="check")
        batch_op.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch_op.alter_column("email", existing_type=sa.String(length=320), nullable=False)
        batch_op.drop_column("active")

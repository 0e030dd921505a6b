"""``sync_runs.status`` and ``kind`` hold only their enums' values (``SyncRunStatus``,
``SyncKind``): the never-written ``running`` leaves the status constraint, and ``kind`` gets
a constraint of its own.

A run is written once, when it ends; should a ``running`` row exist anyway it never finished,
so it is recorded as failed with that said in its error.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-15 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS = "status IN ('succeeded', 'failed', 'skipped')"
OLD_STATUS = "status IN ('running', 'succeeded', 'failed', 'skipped')"
KIND = "kind IN ('scheduled', 'manual', 'initial', 'binding')"


def upgrade() -> None:
    op.execute(
        "UPDATE sync_runs SET status = 'failed', error = COALESCE(error, 'never finished') "
        "WHERE status = 'running'"
    )
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_constraint(op.f("ck_sync_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_runs_status"), STATUS)
        batch.create_check_constraint(op.f("ck_sync_runs_kind"), KIND)


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_constraint(op.f("ck_sync_runs_kind"), type_="check")
        batch.drop_constraint(op.f("ck_sync_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_runs_status"), OLD_STATUS)

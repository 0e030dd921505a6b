"""Re-encrypt every stored secret with the primary key, in batches, safely while workers run.

Each value is swapped with a compare-and-set UPDATE (``WHERE column = old ciphertext``): if a
worker refreshed a token in the meantime, our stale re-encryption matches no row and the
worker's newer value stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Table, select, update

from models import OAuthAuthorization, PagerDutyConnection
from workers.crypto import Keyring, get_keyring
from workers.db import transaction

ENCRYPTED_COLUMNS: dict[Table, tuple[str, ...]] = {
    PagerDutyConnection.__table__: (
        "api_key_encrypted",
        "oauth_client_secret_encrypted",
        "access_token_encrypted",
        "refresh_token_encrypted",
    ),
    OAuthAuthorization.__table__: (
        "code_verifier_encrypted",
        "client_secret_encrypted",
        "code_encrypted",
    ),
}


@dataclass
class RotationReport:
    scanned: int = 0
    rotated: int = 0
    skipped_concurrent: int = 0


def rotate_all(
    *,
    batch_size: int = 500,
    keyring: Keyring | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RotationReport:
    keyring = keyring or get_keyring()
    report = RotationReport()
    for table, columns in ENCRYPTED_COLUMNS.items():
        for name in columns:
            _rotate_column(table, table.c[name], keyring, batch_size, report, progress)
    return report


def _rotate_column(
    table: Table,
    column: Column[str],
    keyring: Keyring,
    batch_size: int,
    report: RotationReport,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    pk = table.c.id
    last_id = None
    done = 0
    while True:
        with transaction() as session:
            query = select(pk, column).where(column.is_not(None)).order_by(pk).limit(batch_size)
            if last_id is not None:
                query = query.where(pk > last_id)
            rows = session.execute(query).all()
            if not rows:
                return
            for row_id, ciphertext in rows:
                report.scanned += 1
                if not keyring.needs_rotation(ciphertext):
                    continue
                result = session.execute(
                    update(table)
                    .where(pk == row_id, column == ciphertext)
                    .values({column.name: keyring.rotate(ciphertext)})
                )
                if result.rowcount:
                    report.rotated += 1
                else:
                    report.skipped_concurrent += 1
            last_id = rows[-1][0]
            done += len(rows)
        if progress:
            progress(f"{table.name}.{column.name}", done, report.rotated)

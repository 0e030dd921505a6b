"""Re-encrypt every stored secret with the primary key, in batches, safely while workers run.

Which columns: every ``EncryptedText`` column of the models' metadata (``encrypted_columns``),
so a new secret column is rotated without anyone keeping a list. The rotation reads and writes
the raw ciphertext (``type_coerce(column, Text)``), never through the type's decrypt/encrypt.
Each value is swapped with a compare-and-set UPDATE (``WHERE column = old ciphertext``): if a
worker refreshed a token in the meantime, our stale re-encryption matches no row and the
worker's newer value stands.

Before anything is written, every stored secret must decrypt with the configured keys: a key
id missing from ``RRPD_ENCRYPTION_KEYS`` or wrong material for a listed id refuses the rotation
(nothing changes) instead of half-rotating or reporting success over secrets nobody can read.
After it, the same check runs again, so the report says what is true, not what was attempted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, Text, select, type_coerce, update

from models import Base
from models.types import EncryptedText
from workers.core.crypto import DecryptionError, Keyring, get_keyring
from workers.core.db import affected_rows, transaction


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every ``EncryptedText`` column of every model, in a stable order."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, EncryptedText)
    ]


@dataclass
class VerifyReport:
    """Which stored secrets decrypt with the configured keys, by key id; what does not."""

    scanned: int = 0
    by_key: Counter[str] = field(default_factory=Counter)
    # (table.column, reason, key id) -> how many values
    problems: Counter[tuple[str, str, str | None]] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failed(self) -> int:
        return sum(self.problems.values())

    def problem_lines(self) -> list[str]:
        lines = []
        for (column, reason, key_id), n in sorted(self.problems.items(), key=str):
            if reason == "unknown_key":
                lines.append(
                    f"{n} secret(s) in {column} are encrypted with key {key_id!r}, which is not "
                    "in RRPD_ENCRYPTION_KEYS: put it back (after the new primary key) and run "
                    "again."
                )
            elif reason == "wrong_key":
                lines.append(
                    f"{n} secret(s) in {column} are encrypted with key {key_id!r} but do not "
                    f"decrypt with the configured {key_id!r}: its material in "
                    "RRPD_ENCRYPTION_KEYS is wrong."
                )
            else:
                lines.append(f"{n} value(s) in {column} are not ciphertext (v1:<key id>:<token>).")
        return lines


class RotationRefused(Exception):
    """Some stored secrets do not decrypt with the configured keys; nothing was re-encrypted."""

    def __init__(self, report: VerifyReport) -> None:
        super().__init__(f"{report.failed} stored secret(s) do not decrypt")
        self.report = report


@dataclass
class RotationReport:
    scanned: int = 0
    rotated: int = 0
    skipped_concurrent: int = 0
    before: VerifyReport | None = None
    after: VerifyReport | None = None


def _values(
    table: Table, column: Column[Any], batch_size: int
) -> Iterator[list[tuple[object, str]]]:
    """(id, ciphertext) of every non-null value, a batch (one short transaction) at a time."""
    pk = table.c.id
    raw = type_coerce(column, Text)
    last_id = None
    while True:
        with transaction() as session:
            query = select(pk, raw).where(column.is_not(None)).order_by(pk).limit(batch_size)
            if last_id is not None:
                query = query.where(pk > last_id)
            rows = [(row_id, value) for row_id, value in session.execute(query).all()]
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


def verify_all(*, batch_size: int = 500, keyring: Keyring | None = None) -> VerifyReport:
    """Decrypt every stored secret (reading only) and count what does not decrypt."""
    keyring = keyring or get_keyring()
    report = VerifyReport()
    for table, column in encrypted_columns():
        for rows in _values(table, column, batch_size):
            for _row_id, ciphertext in rows:
                report.scanned += 1
                try:
                    keyring.decrypt(ciphertext)
                except DecryptionError as exc:
                    report.problems[(f"{table.name}.{column.name}", exc.reason, exc.key_id)] += 1
                else:
                    report.by_key[keyring.key_id_of(ciphertext)] += 1
    return report


def rotate_all(
    *,
    batch_size: int = 500,
    keyring: Keyring | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RotationReport:
    """Verify, re-encrypt what is not on the primary key, verify again.

    Raises ``RotationRefused`` (having written nothing) when a stored secret does not decrypt.
    """
    keyring = keyring or get_keyring()
    before = verify_all(batch_size=batch_size, keyring=keyring)
    if not before.ok:
        raise RotationRefused(before)
    report = RotationReport(before=before)
    for table, column in encrypted_columns():
        _rotate_column(table, column, keyring, batch_size, report, progress)
    report.after = verify_all(batch_size=batch_size, keyring=keyring)
    return report


def _rotate_column(
    table: Table,
    column: Column[Any],
    keyring: Keyring,
    batch_size: int,
    report: RotationReport,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    pk = table.c.id
    raw = type_coerce(column, Text)
    done = 0
    for rows in _values(table, column, batch_size):
        with transaction() as session:
            for row_id, ciphertext in rows:
                report.scanned += 1
                try:
                    if not keyring.needs_rotation(ciphertext):
                        continue
                    rotated = keyring.rotate(ciphertext)
                except DecryptionError:
                    # Written meanwhile with a key we lack: left alone; the check after the
                    # rotation reports it.
                    continue
                # Compare-and-set on the raw ciphertext, written as is (already encrypted).
                result = session.execute(
                    update(table)
                    .where(pk == row_id, raw == ciphertext)
                    .values({column: type_coerce(rotated, Text)})
                )
                if affected_rows(result):
                    report.rotated += 1
                else:
                    report.skipped_concurrent += 1
        done += len(rows)
        if progress:
            progress(f"{table.name}.{column.name}", done, report.rotated)

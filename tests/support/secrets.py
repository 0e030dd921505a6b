"""Read what a secret column holds in the database: the ciphertext, not the model's plaintext."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, inspect, select, type_coerce
from sqlalchemy.orm import Session


def stored_ciphertext(session: Session, row: Any, attribute: str) -> str | None:
    """The raw value of ``row.<attribute>`` (an ``EncryptedText`` column) as stored now."""
    mapper = inspect(type(row))
    column = mapper.columns[attribute]
    pk = mapper.primary_key[0]
    value = session.execute(
        select(type_coerce(column, Text)).where(pk == getattr(row, pk.key))
    ).scalar_one()
    return None if value is None else str(value)

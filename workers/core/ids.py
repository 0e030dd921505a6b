"""Ids arrive as ``uuid.UUID`` from Python callers and as strings from task messages and URLs."""

from __future__ import annotations

import uuid


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """``value`` as a UUID; raises ``ValueError`` when it is not one."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def parse_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    """Like ``as_uuid``, but ``None`` for a missing or malformed id (untrusted input)."""
    if value is None:
        return None
    try:
        return as_uuid(value)
    except ValueError:
        return None

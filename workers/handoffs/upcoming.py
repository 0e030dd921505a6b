"""Stored upcoming shifts that no longer belong to a binding (``rotation_upcoming``): kept
below the features that unbind, re-bind, make Manual or disconnect, which all discard them; the
sync's upcoming read (``workers.sync.upcoming``) writes them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import RotationUpcoming


def discard_upcoming(
    session: Session,
    *,
    rotation_ids: Sequence[uuid.UUID] = (),
    connection_id: uuid.UUID | None = None,
) -> None:
    """Rotations unbound, re-bound or made Manual, or a connection disconnected: their stored
    plans belong to the old binding (the next binding's first read is a baseline again)."""
    if rotation_ids:
        session.execute(
            delete(RotationUpcoming)
            .where(RotationUpcoming.rotation_id.in_(list(rotation_ids)))
            .execution_options(synchronize_session=False)
        )
    if connection_id is not None:
        session.execute(
            delete(RotationUpcoming)
            .where(RotationUpcoming.connection_id == connection_id)
            .execution_options(synchronize_session=False)
        )

"""Events other Round Robin services consume: written to the outbox with the change.

Each helper writes one event into the caller's transaction (``workers.outbox.writer``); the
relay publishes it to the Redis stream (``workers.outbox.event_stream``) after commit. Call them
where the change is made, in the same transaction:

* ``rotation_on_duty_changed`` / ``rotation_members_changed``: a bound rotation's people changed
  (through ``rotation_people_changed``, called by the one writer of who is on call,
  ``workers.handoffs.on_call.write_on_call``, for the sync and the handoff loop alike);
* ``rotation_upcoming_changed``: a bound rotation's planned on-duty time in the next days changed
  (``workers.sync.upcoming``, in the sync's apply);
* ``rotation_bound`` / ``rotation_made_manual``: a rotation was bound to a schedule, or became
  Manual (unbound by an admin, by a disconnect, or by a confirmed change of account);
* ``transition``: every change of a connection's status (it calls
  ``PagerDutyConnection.transition`` and writes ``connection.status.changed``).

The document's shape is in ``workers.outbox.event_schema``; docs/events.md has every type.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import ConnectionStatus, PagerDutyConnection, utcnow
from workers.outbox import event_schema as schema
from workers.outbox.writer import add_event

__all__ = [
    "connection_status_changed",
    "rotation_bound",
    "rotation_made_manual",
    "rotation_members_changed",
    "rotation_on_duty_changed",
    "rotation_people_changed",
    "rotation_upcoming_changed",
    "transition",
]


def rotation_key(rotation_id: uuid.UUID) -> str:
    return f"rotation:{rotation_id}"


def connection_key(connection_id: uuid.UUID) -> str:
    return f"connection:{connection_id}"


def _ids(values: Iterable[uuid.UUID]) -> list[str]:
    return [str(v) for v in values]


def _rotation_subject(rotation_id: uuid.UUID, connection_id: uuid.UUID | None) -> dict[str, str]:
    subject = {"rotation_id": str(rotation_id)}
    if connection_id is not None:
        subject["connection_id"] = str(connection_id)
    return subject


def _followed(schedule_id: str | None, schedule_ids: Sequence[str] | None) -> list[str]:
    """Every schedule the rotation follows, first = ``schedule_id`` (older callers name one)."""
    if schedule_ids:
        return list(schedule_ids)
    return [schedule_id] if schedule_id else []


def rotation_on_duty_changed(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID | None,
    schedule_id: str | None,
    schedule_ids: Sequence[str] | None = None,
    before: Iterable[uuid.UUID],
    after: Iterable[uuid.UUID],
    occurred_at: datetime,
    cause: str = "sync",
) -> dict[str, Any] | None:
    """Who is on duty changed (``after`` is everyone on duty now); nothing if it did not."""
    old, new = set(before), set(after)
    if old == new:
        return None
    return add_event(
        session,
        type=schema.ROTATION_ON_DUTY_CHANGED,
        key=rotation_key(rotation_id),
        workspace_id=workspace_id,
        occurred_at=occurred_at,
        subject=_rotation_subject(rotation_id, connection_id),
        data={
            "on_duty": sorted(_ids(new)),
            "came_on_duty": sorted(_ids(new - old)),
            "went_off_duty": sorted(_ids(old - new)),
            "schedule_id": schedule_id,
            "schedule_ids": _followed(schedule_id, schedule_ids),
            "cause": cause,
        },
    )


def rotation_members_changed(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID | None,
    schedule_id: str | None,
    schedule_ids: Sequence[str] | None = None,
    before: Iterable[uuid.UUID],
    after: Iterable[uuid.UUID],
    occurred_at: datetime,
    cause: str = "sync",
) -> dict[str, Any] | None:
    """The members or their order changed (``after`` in rotation order); nothing if not."""
    old, new = list(before), list(after)
    if old == new:
        return None
    return add_event(
        session,
        type=schema.ROTATION_MEMBERS_CHANGED,
        key=rotation_key(rotation_id),
        workspace_id=workspace_id,
        occurred_at=occurred_at,
        subject=_rotation_subject(rotation_id, connection_id),
        data={
            "members": _ids(new),
            "joined": _ids(m for m in new if m not in set(old)),
            "left": _ids(m for m in old if m not in set(new)),
            "schedule_id": schedule_id,
            "schedule_ids": _followed(schedule_id, schedule_ids),
            "cause": cause,
        },
    )


def rotation_people_changed(
    session: Session,
    conn: PagerDutyConnection,
    rotation_id: uuid.UUID,
    schedule_ids: Sequence[str],
    members_before: list[uuid.UUID],
    members_after: list[uuid.UUID],
    duty_before: set[uuid.UUID],
    duty_after: set[uuid.UUID],
    *,
    occurred_at: datetime,
    cause: str = "sync",
) -> None:
    """A bound rotation's people changed: ``rotation.members.changed`` then
    ``rotation.on_duty.changed``, each only if that part changed.

    The one function that changes a bound rotation's people
    (``workers.handoffs.on_call.write_on_call``, for sync and handoffs alike) calls this, in
    its transaction, with what it wrote.
    """
    subject: dict[str, Any] = {
        "workspace_id": conn.workspace_id,
        "rotation_id": rotation_id,
        "connection_id": conn.id,
        "schedule_id": schedule_ids[0],
        "schedule_ids": schedule_ids,
        "occurred_at": occurred_at,
        "cause": cause,
    }
    rotation_members_changed(session, before=members_before, after=members_after, **subject)
    rotation_on_duty_changed(session, before=duty_before, after=duty_after, **subject)


def rotation_upcoming_changed(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID,
    schedule_id: str,
    window: tuple[datetime, datetime],
    people: list[dict[str, Any]],
    occurred_at: datetime,
    cause: str = "sync",
    schedule_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Planned on-duty time in ``window`` moved between people (``people``: each affected
    person with the intervals ``added`` to and ``removed`` from them)."""
    return add_event(
        session,
        type=schema.ROTATION_UPCOMING_CHANGED,
        key=rotation_key(rotation_id),
        workspace_id=workspace_id,
        occurred_at=occurred_at,
        subject=_rotation_subject(rotation_id, connection_id),
        data={
            "schedule_id": schedule_id,
            "schedule_ids": _followed(schedule_id, schedule_ids),
            "window": {"from": schema.timestamp(window[0]), "until": schema.timestamp(window[1])},
            "people": people,
            "cause": cause,
        },
    )


def rotation_bound(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID,
    schedule_id: str,
    previous_schedule_id: str | None,
    schedule_ids: Sequence[str] | None = None,
    previous_schedule_ids: Sequence[str] | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The rotation follows ``schedule_ids`` now (1 to 10; ``schedule_id`` is the first, as
    before several schedules per rotation); ``previous_*``: what it followed (empty: none)."""
    return add_event(
        session,
        type=schema.ROTATION_BOUND,
        key=rotation_key(rotation_id),
        workspace_id=workspace_id,
        occurred_at=occurred_at or utcnow(),
        subject=_rotation_subject(rotation_id, connection_id),
        data={
            "schedule_id": schedule_id,
            "previous_schedule_id": previous_schedule_id,
            "schedule_ids": list(schedule_ids or [schedule_id]),
            "previous_schedule_ids": list(
                previous_schedule_ids
                if previous_schedule_ids is not None
                else ([previous_schedule_id] if previous_schedule_id else [])
            ),
        },
    )


def rotation_made_manual(
    session: Session,
    *,
    workspace_id: uuid.UUID,
    rotation_id: uuid.UUID,
    connection_id: uuid.UUID | None,
    previous_schedule_id: str | None,
    reason: str,
    members: Iterable[uuid.UUID],
    on_duty: Iterable[uuid.UUID],
    occurred_at: datetime | None = None,
    previous_schedule_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The rotation is Manual now (``reason``: ``unbound``, ``disconnected`` or
    ``account_changed``, workers.connections.account_change); it keeps the
    members and on-duty people listed."""
    return add_event(
        session,
        type=schema.ROTATION_MADE_MANUAL,
        key=rotation_key(rotation_id),
        workspace_id=workspace_id,
        occurred_at=occurred_at or utcnow(),
        subject=_rotation_subject(rotation_id, connection_id),
        data={
            "previous_schedule_id": previous_schedule_id,
            "previous_schedule_ids": list(
                previous_schedule_ids
                if previous_schedule_ids is not None
                else ([previous_schedule_id] if previous_schedule_id else [])
            ),
            "reason": reason,
            "members": _ids(members),
            "on_duty": sorted(_ids(on_duty)),
        },
    )


def connection_status_changed(
    session: Session, conn: PagerDutyConnection, previous: str | None
) -> dict[str, Any] | None:
    """``conn.status`` differs from ``previous`` (``None``: the connection is new)."""
    if previous == conn.status:
        return None
    return add_event(
        session,
        type=schema.CONNECTION_STATUS_CHANGED,
        key=connection_key(conn.id),
        workspace_id=conn.workspace_id,
        occurred_at=conn.status_changed_at or utcnow(),
        subject={"connection_id": str(conn.id)},
        data={
            "status": conn.status,
            "previous_status": previous,
            "auth_method": conn.auth_method,
            # Words for the admin when the change is a problem (invalid, needs_reauth).
            "reason": conn.last_error
            if conn.status in (ConnectionStatus.INVALID, ConnectionStatus.NEEDS_REAUTH)
            else None,
        },
    )


def transition(
    session: Session,
    conn: PagerDutyConnection,
    new: ConnectionStatus,
    *,
    error: str | None = None,
) -> None:
    """``conn.transition(new)`` plus its ``connection.status.changed`` event: the one way code
    changes a connection's status (a test checks that nothing calls ``transition`` directly)."""
    previous = conn.status
    conn.transition(new, error=error)
    connection_status_changed(session, conn, previous)

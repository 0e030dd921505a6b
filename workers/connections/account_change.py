"""A pending key of another PagerDuty account: never swapped in silently.

Its check (``workers.connections.activation.validate_api_key``) lists the new account's
schedules and keeps the key (encrypted) with status ``account_change`` and that list in
``pending_account``; nothing changes until the workspace admin, shown what happens to each
bound rotation (``rotation_plan``), confirms the switch (``confirm``) or discards the key
(``workers.connections.pending.discard``). A confirmed switch is one transaction: the key is
swapped in as a proven one (``pending.record_proven``), and every bound rotation whose schedule
is not in the new account becomes Manual, the way a disconnect does it
(``workers.rotations.manual``), with an event and an audit entry each.

An account change waits for the admin, not for a task, so it has no drive deadline; the key is
forgotten a day after it was entered (``forget_expired``, from beat's 5-minute sweep), so a
secret nobody decided about is not kept for ever and a plan is never acted on weeks later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import (
    AuditAction,
    ConnectionStatus,
    PagerDutyConnection,
    PagerDutySchedule,
    PendingStatus,
    Region,
    Rotation,
    RotationMode,
    ScheduledHandoff,
    utcnow,
)
from workers.connections import messages, pending
from workers.core.access import Actor, Conflict, Missing, require_manager
from workers.core.audit import audit
from workers.core.connection_rows import bound_rotations_for_update
from workers.core.db import transaction
from workers.core.readmodel import ReadModel
from workers.handoffs.bound import schedules_of
from workers.handoffs.upcoming import discard_upcoming
from workers.pagerduty.errors import BadRequest, Forbidden, NoApiAccess, NotFound
from workers.pagerduty.interfaces import PagerDutyReader
from workers.rotations.manual import revert_to_manual

log = logging.getLogger(__name__)

# How long a key of another account waits for the admin's decision before it is forgotten.
DECISION_WINDOW = timedelta(hours=24)
STAYS_BOUND = "stays_bound"
MADE_MANUAL = "made_manual"
# The reason of the ``rotation.made_manual`` events a confirmed switch writes (docs/events.md).
REASON = "account_changed"


class PendingRotationOut(ReadModel):
    rotation_id: uuid.UUID
    name: str
    schedule_id: str | None
    schedule_name: str | None = Field(description="As mirrored from the connected account.")
    outcome: str = Field(description="stays_bound or made_manual.")


def list_schedules(reader: PagerDutyReader) -> dict[str, str]:
    """Every schedule of the key's account, ``{id: name}``: the v2 list and the v3 refs (one
    paged list each). Transient errors propagate: the check retries, as for its probe. v3 may
    be gated by an undocumented ability (as in the sync): then the v2 list alone decides."""
    schedules = {s.id: s.name for s in reader.list_schedules()}
    try:
        for ref in reader.list_v3_schedule_refs():
            schedules[ref.id] = ref.name
    except (BadRequest, NoApiAccess, Forbidden, NotFound):
        log.info("v3 schedules not listed for an account change")
    return schedules


def record_account_change(
    session: Session,
    conn: PagerDutyConnection,
    *,
    subdomain: str,
    key_level: str | None,
    region: Region,
    notice: str | None,
    schedules: dict[str, str],
) -> str:
    """End the pending check as ``account_change`` in the caller's transaction (the row locked):
    the key stays for a confirmation, with what the check found. Returns the admin's words."""
    live = conn.pagerduty_subdomain or ""
    message = messages.pending_account_change(live, subdomain)
    conn.pending_region = region
    conn.pending_account = {
        "subdomain": subdomain,
        "previous_subdomain": live,
        "key_level": key_level,
        "notice": notice,
        "schedules": dict(sorted(schedules.items())),
    }
    # Waits for the admin: nothing to drive. ``record_ended`` keeps the key for this status.
    pending.record_ended(session, conn, PendingStatus.ACCOUNT_CHANGE, message)
    return message


def waits_for_confirmation(conn: PagerDutyConnection) -> bool:
    return (
        conn.pending_status == PendingStatus.ACCOUNT_CHANGE
        and conn.pending_account is not None
        and conn.pending_generation is not None
        and conn.pending_generation > conn.generation
    )


def rotation_plan(session: Session, conn: PagerDutyConnection) -> list[PendingRotationOut]:
    """What a switch does to each rotation bound now: ``stays_bound`` when its schedule is in
    the new account, ``made_manual`` otherwise (as of the check's list)."""
    found = (conn.pending_account or {}).get("schedules") or {}
    rows = session.execute(
        select(Rotation.id, Rotation.name, Rotation.pagerduty_schedule_id, PagerDutySchedule.name)
        .outerjoin(
            PagerDutySchedule,
            (PagerDutySchedule.connection_id == conn.id)
            & (PagerDutySchedule.pagerduty_id == Rotation.pagerduty_schedule_id),
        )
        .where(Rotation.workspace_id == conn.workspace_id, Rotation.mode == RotationMode.PAGERDUTY)
        .order_by(Rotation.name, Rotation.id)
    ).all()
    followed = schedules_of(session, [row[0] for row in rows])
    return [
        PendingRotationOut(
            rotation_id=rid,
            name=name,
            schedule_id=schedule_id,
            schedule_name=schedule_name,
            outcome=STAYS_BOUND if _all_found(followed.get(rid, []), found) else MADE_MANUAL,
        )
        for rid, name, schedule_id, schedule_name in rows
    ]


def _all_found(schedule_ids: list[str], found: Mapping[str, object]) -> bool:
    """Every schedule the rotation follows is in the new account (none: not bound)."""
    return bool(schedule_ids) and all(sid in found for sid in schedule_ids)


def confirm(session: Session, actor: Actor) -> PagerDutyConnection:
    """The admin's "switch accounts", in the caller's (one) transaction: the key goes in, the
    rotations whose schedule is not in the new account become Manual, the rest stay bound."""
    require_manager(actor)
    # The lock order (workers.core.connection_rows): the connection row, then bound rotations.
    conn = session.execute(
        select(PagerDutyConnection)
        .where(
            PagerDutyConnection.workspace_id == actor.workspace_id,
            PagerDutyConnection.status != ConnectionStatus.DISCONNECTED,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if conn is None:
        raise Missing(messages.NO_PENDING, code="no_pending")
    if conn.status == ConnectionStatus.DISCONNECTING:
        raise Conflict(messages.DISCONNECTING, code="disconnecting")
    if conn.status != ConnectionStatus.CONNECTED:
        raise Conflict(messages.not_ready(conn.status), code="connection_not_ready")
    if conn.pending_status is None:
        raise Missing(messages.NO_PENDING, code="no_pending")
    if not waits_for_confirmation(conn) or not conn.pending_api_key:
        raise Conflict(messages.NOT_ACCOUNT_CHANGE, code="not_account_change")
    plan = dict(conn.pending_account or {})
    found: dict[str, str] = plan.get("schedules") or {}
    previous = conn.pagerduty_subdomain
    now = utcnow()

    # Re-read under the locks: a rotation bound since the check is judged like the others.
    rotations = list(session.execute(bound_rotations_for_update(conn.workspace_id)).scalars())
    # A rotation following several schedules stays bound only if the new account has them all.
    followed = schedules_of(session, [r.id for r in rotations])
    missing = [r for r in rotations if not _all_found(followed.get(r.id, []), found)]
    stays = [
        {"id": str(r.id), "name": r.name, "schedule": r.pagerduty_schedule_id}
        for r in rotations
        if _all_found(followed.get(r.id, []), found)
    ]
    made_manual = revert_to_manual(
        session,
        workspace_id=conn.workspace_id,
        connection_id=conn.id,
        rotations=missing,
        reason=REASON,
        occurred_at=now,
    )
    for rotation in made_manual:
        audit(
            session,
            conn.workspace_id,
            AuditAction.ROTATION_MADE_MANUAL,
            actor_member_id=actor.member_id,
            at=now,
            rotation_id=rotation["id"],
            previous_schedule_id=rotation["schedule"],
            reason=REASON,
            connection_id=conn.id,
            new_subdomain=plan.get("subdomain"),
        )
    # Handoffs planned from the old account's timelines; the first sync plans the new ones.
    session.execute(
        delete(ScheduledHandoff)
        .where(ScheduledHandoff.connection_id == conn.id)
        .execution_options(synchronize_session=False)
    )
    discard_upcoming(session, connection_id=conn.id)  # the old account's shifts, likewise
    # An API key does not name the account id or user: the old account's must not stay.
    conn.pagerduty_account_id = None
    conn.pagerduty_user_id = None
    pending_generation = conn.pending_generation
    assert conn.pending_region is not None
    pending.record_proven(
        session,
        conn,
        key_level=plan.get("key_level"),
        subdomain=plan.get("subdomain"),
        region=conn.pending_region,
        notice=plan.get("notice"),
    )
    audit(
        session,
        conn.workspace_id,
        AuditAction.PENDING_ACCOUNT_CHANGE_CONFIRMED,
        actor_member_id=actor.member_id,
        at=now,
        connection_id=conn.id,
        previous_subdomain=previous,
        subdomain=conn.pagerduty_subdomain,
        generation=pending_generation,
        rotations_made_manual=made_manual,
        rotations_staying_bound=stays,
    )
    session.flush()
    log.info(
        "account change confirmed",
        extra={"connection_id": str(conn.id), "rotations_made_manual": len(made_manual)},
    )
    return conn


def forget_expired(now: datetime | None = None) -> int:
    """Forget keys of another account that waited longer than ``DECISION_WINDOW``: the key and
    the plan go, the admin reads why. Returns how many."""
    cutoff = (now or utcnow()) - DECISION_WINDOW
    forgotten = 0
    with transaction() as session:
        expired = session.scalars(
            select(PagerDutyConnection)
            .where(
                PagerDutyConnection.pending_status == PendingStatus.ACCOUNT_CHANGE,
                PagerDutyConnection.pending_since <= cutoff,
                PagerDutyConnection.pending_account.is_not(None),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for conn in expired:
            conn.pending_api_key = None
            conn.pending_account = None
            conn.pending_status = PendingStatus.LOST
            conn.pending_message = messages.ACCOUNT_CHANGE_EXPIRED
            audit(
                session,
                conn.workspace_id,
                AuditAction.PENDING_ACCOUNT_CHANGE_EXPIRED,
                connection_id=conn.id,
                generation=conn.pending_generation,
            )
            forgotten += 1
    return forgotten

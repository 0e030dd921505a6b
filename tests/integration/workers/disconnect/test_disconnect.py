"""Disconnect as plain functions, on PostgreSQL with the simulator."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text

from models import (
    AuditEvent,
    OAuthAuthorization,
    PagerDutyConnection,
    Rotation,
)
from tests.support import factories
from tests.support.connections import pending_login
from tests.support.outbox import committed, paused_outbox
from tests.support.sync import (
    arrange_demo,
    fast_client,
    mirror_counts,
    rotation_state,
)
from workers.disconnect import transaction
from workers.sync import run as sync

pytestmark = pytest.mark.postgres_only


def _synced_demo(session, sim, **kwargs):  # type: ignore[no-untyped-def]
    demo = arrange_demo(session, sim, **kwargs)
    result = sync.sync_connection(demo.connection_id, client_factory=fast_client)
    assert result.status == "succeeded", result
    return demo


def _audits(session, workspace_id) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    session.rollback()
    return list(
        session.execute(select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)).scalars()
    )


def test_disconnect_reverts_bound_rotations_and_removes_everything(session, sim) -> None:
    demo = _synced_demo(session, sim)
    pending_login(session, demo.workspace_id)
    states = {r: rotation_state(session, r) for r in demo.rotations.values()}
    assert all(members for members, _ in states.values())
    # Another workspace's connection and data must not be touched.
    other = _synced_demo(session, sim, bind={"p": "PSPRIMA"})
    other_before = mirror_counts(session, other.connection_id)
    generation = session.get(PagerDutyConnection, demo.connection_id).generation

    result = transaction.disconnect_connection(
        demo.connection_id, actor_member_id=str(demo.members["alice"])
    )

    assert result.status == "disconnected"
    assert result.rotations_made_manual == 3
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "disconnected"
    assert conn.generation == generation + 1
    assert conn.disconnected_at is not None
    assert conn.next_sync_at is None
    assert conn.api_key is None
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.oauth_client_secret is None
    for rid, (members, duty) in states.items():
        rot = session.get(Rotation, rid)
        assert (rot.mode, rot.pagerduty_schedule_id, rot.bound_at) == ("manual", None, None)
        assert rotation_state(session, rid) == (members, duty)  # people kept
    assert sum(mirror_counts(session, demo.connection_id).values()) == 0
    assert not session.scalar(
        select(func.count())
        .select_from(OAuthAuthorization)
        .where(OAuthAuthorization.workspace_id == demo.workspace_id)
    )
    [audit] = _audits(session, demo.workspace_id)
    assert audit.action == "pagerduty.disconnected"
    assert audit.actor == "member"
    assert audit.actor_member_id == demo.members["alice"]
    assert audit.details["previous_status"] == "connected"
    assert {r["schedule"] for r in audit.details["rotations_made_manual"]} == {
        "PSPRIMA",
        "PSSECON",
        "PSFTSUN",
    }
    # The other workspace is untouched.
    assert mirror_counts(session, other.connection_id) == other_before
    assert session.get(PagerDutyConnection, other.connection_id).status == "connected"
    assert session.get(Rotation, other.rotations["p"]).mode == "pagerduty"


SECRET_COLUMNS = (
    "code_verifier_encrypted",
    "client_secret_encrypted",
    "code_encrypted",
    "issued_tokens_encrypted",
)


def _logins_holding_secrets(session, workspace_id) -> int:  # type: ignore[no-untyped-def]
    held = " OR ".join(f"{c} IS NOT NULL" for c in SECRET_COLUMNS)
    return int(
        session.execute(
            text(f"SELECT count(*) FROM oauth_authorizations WHERE workspace_id = :w AND ({held})"),
            {"w": workspace_id},
        ).scalar_one()
    )


def test_a_disconnect_leaves_no_login_secret_of_the_workspace(session, sim) -> None:
    """Every login of the workspace goes: pending, finished or failed (consumed, attached to no
    connection: a denial kept such a row with its client secret and PKCE verifier), one of the
    connection's own with its code and the tokens PagerDuty issued. Another workspace's
    logins stay."""
    demo = _synced_demo(session, sim)
    pending_login(session, demo.workspace_id)
    pending_login(session, demo.workspace_id, consumed=True)
    pending_login(
        session,
        demo.workspace_id,
        demo.connection_id,
        consumed=True,
        code="the-code",
        issued_tokens='{"access_token": "at"}',
    )
    other = factories.workspace(session)
    session.commit()
    pending_login(session, other.id, consumed=True)
    assert _logins_holding_secrets(session, demo.workspace_id) == 3

    assert transaction.disconnect_connection(demo.connection_id).status == "disconnected"

    session.rollback()
    assert _logins_holding_secrets(session, demo.workspace_id) == 0
    assert _logins_holding_secrets(session, other.id) == 1


def test_disconnect_is_idempotent(session, sim) -> None:
    demo = _synced_demo(session, sim)
    assert transaction.disconnect_connection(demo.connection_id).status == "disconnected"
    session.rollback()
    generation = session.get(PagerDutyConnection, demo.connection_id).generation

    again = transaction.disconnect_connection(
        demo.connection_id, actor_member_id=str(demo.members["bob"])
    )

    assert again.status == "already_disconnected"
    session.expire_all()
    assert session.get(PagerDutyConnection, demo.connection_id).generation == generation
    [audit] = _audits(session, demo.workspace_id)
    assert audit.actor == "system"
    assert audit.actor_member_id is None
    assert transaction.disconnect_connection(uuid.uuid4()).status == "not_found"
    assert transaction.disconnect_connection("not-a-uuid").status == "not_found"


def test_two_disconnects_at_once_do_the_work_once(session, sim) -> None:
    for _ in range(5):
        demo = _synced_demo(session, sim)
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def run(demo=demo, barrier=barrier, results=results) -> None:  # type: ignore[no-untyped-def]
            barrier.wait()
            results.append(transaction.disconnect_connection(demo.connection_id).status)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(results) == ["already_disconnected", "disconnected"]
        assert len(_audits(session, demo.workspace_id)) == 1


def test_unknown_actor_is_recorded_without_breaking_the_disconnect(session, sim) -> None:
    demo = _synced_demo(session, sim)
    stranger = factories.member(session, factories.workspace(session))
    session.commit()
    result = transaction.disconnect_connection(demo.connection_id, actor_member_id=str(stranger.id))
    assert result.status == "disconnected"
    [audit] = _audits(session, demo.workspace_id)
    assert audit.actor_member_id is None
    assert audit.actor == "system"
    assert audit.details["unknown_actor_member_id"] == str(stranger.id)


def test_disconnect_is_all_or_nothing(session, sim, monkeypatch) -> None:
    demo = _synced_demo(session, sim)
    pending_login(session, demo.workspace_id)
    before = mirror_counts(session, demo.connection_id)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away at the last step")

    # Fail at the very end of the transaction, after every other write was sent.
    monkeypatch.setattr(transaction, "audit", boom)
    with pytest.raises(RuntimeError):
        transaction.disconnect_connection(demo.connection_id)

    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "connected"
    assert conn.api_key is not None
    assert mirror_counts(session, demo.connection_id) == before
    for rid in demo.rotations.values():
        assert session.get(Rotation, rid).mode == "pagerduty"
    assert session.scalar(select(func.count()).select_from(OAuthAuthorization)) == 1


def test_oauth_disconnect_deletes_our_tokens_and_calls_nothing_at_pagerduty(session, sim) -> None:
    """PagerDuty documents no revocation endpoint: nothing is sent to it, nothing is queued,
    and our copies are gone in the disconnect's own transaction."""
    demo = _synced_demo(session, sim, oauth=True)
    sim.control.post("/stats/reset")

    with paused_outbox():
        before = len(committed())
        result = transaction.disconnect_connection(demo.connection_id)
        queued = committed()[before:]

    assert result.status == "disconnected"
    assert queued == []
    assert sim.control.get("/stats").json()["total"] == 0
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.oauth_client_secret is None


def test_a_connection_whose_secret_no_key_decrypts_still_shows_and_disconnects(
    session, sim
) -> None:
    """An operator removed the key that encrypted a stored API key: the connection must still
    load for its status and its disconnect (which deletes the unreadable secret)."""
    from sqlalchemy import text

    from workers.connections.status import connection_status

    demo = _synced_demo(session, sim)
    session.execute(
        text("UPDATE pagerduty_connections SET api_key_encrypted = :c WHERE id = :i"),
        {"c": "v1:removedkey:gAAAAABnot-a-token", "i": demo.connection_id},
    )
    session.commit()

    assert connection_status(session, demo.workspace_id).status == "connected"
    result = transaction.disconnect_connection(demo.connection_id)

    assert result.status == "disconnected"
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "disconnected"
    raw = session.execute(
        text("SELECT api_key_encrypted FROM pagerduty_connections WHERE id = :i"),
        {"i": demo.connection_id},
    ).scalar_one()
    assert raw is None

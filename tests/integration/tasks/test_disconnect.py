"""``pagerduty.disconnect`` / ``pagerduty.revoke_tokens`` by name on real workers, and races.

Invariants checked after every race: once a disconnect has committed, no rotation of the
workspace is bound, no credential is stored, the mirror of the connection is empty, there is one
audit event, and nothing an older sync computed appears afterwards.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select, update

from models import (
    AuditEvent,
    OAuthAuthorization,
    PagerDutyConnection,
    PagerDutyUser,
    Rotation,
    SyncRun,
    Workspace,
)
from tests.support import factories, processes
from tests.support.connections import pending_login
from tests.support.locks import waiting_on_a_lock
from tests.support.stack import demo_api_key
from tests.support.sync import (
    arrange_demo,
    fast_client,
    mirror_counts,
    rotation_state,
)
from workers.core.db import session_factory
from workers.core.settings import get_settings
from workers.sync import run as sync
from workers.tasking.app import app

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]

DISCONNECT = "pagerduty.disconnect"
SYNC = "pagerduty.sync_connection"


def assert_disconnected(session: Any, demo: Any) -> PagerDutyConnection:
    """The invariants that must hold once a disconnect has committed."""
    session.rollback()
    session.expire_all()
    conn = session.get(PagerDutyConnection, demo.connection_id)
    assert conn.status == "disconnected"
    assert conn.api_key is None
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.oauth_client_secret is None
    bound = session.scalar(
        select(func.count())
        .select_from(Rotation)
        .where(Rotation.workspace_id == demo.workspace_id, Rotation.mode == "pagerduty")
    )
    assert bound == 0
    assert sum(mirror_counts(session, demo.connection_id).values()) == 0
    assert (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.workspace_id == demo.workspace_id)
        )
        == 1
    )
    assert not session.scalar(
        select(func.count())
        .select_from(OAuthAuthorization)
        .where(OAuthAuthorization.workspace_id == demo.workspace_id)
    )
    return conn


def _people(session: Any, demo: Any) -> dict:
    return {r: rotation_state(session, r) for r in demo.rotations.values()}


def test_uninstall_walkthrough(session, sim, live_workers) -> None:
    """Connected with an API key, bound rotations synced, then uninstalled by name."""
    demo = arrange_demo(session, sim)
    pending_login(session, demo.workspace_id)
    synced = app.send_task(SYNC, kwargs={"connection_id": str(demo.connection_id)}).get(30)
    assert synced["status"] == "succeeded"
    before = _people(session, demo)
    assert all(members for members, _ in before.values())

    result = app.send_task(
        DISCONNECT,
        kwargs={
            "connection_id": str(demo.connection_id),
            "actor_member_id": str(demo.members["alice"]),
        },
    ).get(timeout=30)

    assert result == {
        "status": "disconnected",
        "connection_id": str(demo.connection_id),
        "rotations_made_manual": 3,
        "mirror_rows_deleted": result["mirror_rows_deleted"],
    }
    assert result["mirror_rows_deleted"] > 0
    assert_disconnected(session, demo)
    assert _people(session, demo) == before  # every rotation Manual, members and on-duty kept
    audit = session.execute(
        select(AuditEvent).where(AuditEvent.workspace_id == demo.workspace_id)
    ).scalar_one()
    assert (audit.actor, audit.actor_member_id) == ("member", demo.members["alice"])
    # Nothing syncs a disconnected connection, and a repeated uninstall is a no-op.
    after = app.send_task(SYNC, kwargs={"connection_id": str(demo.connection_id)}).get(30)
    assert after["status"] == "unavailable"
    again = app.send_task(DISCONNECT, kwargs={"connection_id": str(demo.connection_id)}).get(30)
    assert again["status"] == "already_disconnected"
    assert_disconnected(session, demo)


def test_oauth_uninstall_deletes_our_tokens_and_the_old_revoke_task_answers(
    session, sim, live_workers
) -> None:
    """No revocation endpoint exists at PagerDuty: nothing is called there; the retired
    ``pagerduty.revoke_tokens`` still answers a sender of the old contract, by name."""
    demo = arrange_demo(session, sim, oauth=True)
    sim.control.post("/stats/reset").raise_for_status()
    result = app.send_task(DISCONNECT, kwargs={"connection_id": str(demo.connection_id)}).get(30)
    assert result["status"] == "disconnected"
    assert_disconnected(session, demo)
    assert sim.control.get("/stats").json()["total"] == 0
    old = app.send_task(
        "pagerduty.revoke_tokens", kwargs={"connection_id": str(demo.connection_id)}
    ).get(30)
    assert old["revoked"] == 0
    assert "no token-revocation API" in old["reason"]


# Delays between sending a sync and sending the disconnect: from "during the fetch" to "well
# after the sync committed", so both orders happen.
RACE_DELAYS = (0.0, 0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.6, 1.0)


def test_disconnect_racing_a_sync(session, sim, live_workers) -> None:
    # Each PagerDuty request takes 50 ms, so a sync's fetch (4 requests) is a wide target.
    sim.control.post("/settings", json={"latency_ms": 50}).raise_for_status()
    outcomes: Counter[str] = Counter()
    for delay in RACE_DELAYS:
        # No sync before: the raced sync is the first, so everything it would do is a write.
        demo = arrange_demo(session, sim)
        s = app.send_task(SYNC, kwargs={"connection_id": str(demo.connection_id)})
        time.sleep(delay)
        d = app.send_task(DISCONNECT, kwargs={"connection_id": str(demo.connection_id)})
        assert d.get(timeout=30)["status"] == "disconnected"
        synced = s.get(timeout=30)
        assert_disconnected(session, demo)
        wrote = any(members or duty for members, duty in _people(session, demo).values())
        if synced["status"] == "succeeded":
            # It committed before the disconnect: its people stay on the now-manual rotations.
            assert wrote
        else:
            # Fenced off (or stopped before fetching): not one row of it appears.
            assert synced["status"] in ("skipped", "unavailable"), synced
            assert not wrote
        runs = set(
            session.execute(
                select(SyncRun.status).where(SyncRun.connection_id == demo.connection_id)
            ).scalars()
        )
        assert runs <= {"succeeded", "skipped"}
        outcomes[synced["status"]] += 1
    assert outcomes["succeeded"] >= 1, outcomes
    assert outcomes["skipped"] + outcomes["unavailable"] >= 1, outcomes


def test_two_disconnects_at_once(session, sim, live_workers) -> None:
    for _ in range(8):
        demo = arrange_demo(session, sim)
        assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
            "succeeded"
        )
        kwargs = {"connection_id": str(demo.connection_id)}
        pair = [app.send_task(DISCONNECT, kwargs=kwargs) for _ in range(2)]
        statuses = sorted(r.get(timeout=30)["status"] for r in pair)
        assert statuses == ["already_disconnected", "disconnected"]
        assert_disconnected(session, demo)


def test_reconnect_right_after_a_disconnect(session, sim, live_workers) -> None:
    """A stale sync and a duplicate disconnect of the old connection must not touch the new
    one: the workspace reconnects (to another PagerDuty account) right after disconnecting."""
    sim.control.post("/settings", json={"latency_ms": 40}).raise_for_status()
    euco_key = demo_api_key(sim, "euco-readonly")
    for _ in range(5):
        demo = arrange_demo(session, sim)
        ws = session.get(Workspace, demo.workspace_id)
        anna = factories.member(session, ws, email="ANNA@euco.example")
        session.commit()
        old = str(demo.connection_id)
        stale_sync = app.send_task(SYNC, kwargs={"connection_id": old})  # fetching...
        time.sleep(0.03)
        assert app.send_task(DISCONNECT, kwargs={"connection_id": old}).get(30)["status"] == (
            "disconnected"
        )
        # Reconnect at once and bind the primary rotation to the new account's schedule.
        new = factories.api_key_connection(session, ws, api_key=euco_key, region="eu")
        session.execute(
            update(Rotation)
            .where(Rotation.id == demo.rotations["primary"])
            .values(mode="pagerduty", pagerduty_schedule_id="PSEUDAY")
        )
        session.commit()
        new_sync = app.send_task(SYNC, kwargs={"connection_id": str(new.id), "kind": "binding"})
        duplicate = app.send_task(DISCONNECT, kwargs={"connection_id": old})
        late_sync = app.send_task(SYNC, kwargs={"connection_id": old})

        assert stale_sync.get(30)["status"] in ("skipped", "unavailable")
        assert late_sync.get(30)["status"] == "unavailable"
        assert duplicate.get(30)["status"] == "already_disconnected"
        assert new_sync.get(30)["status"] == "succeeded"

        session.rollback()
        session.expire_all()
        assert sum(mirror_counts(session, demo.connection_id).values()) == 0
        assert session.get(PagerDutyConnection, new.id).status == "connected"
        primary = session.get(Rotation, demo.rotations["primary"])
        assert (primary.mode, primary.pagerduty_schedule_id) == ("pagerduty", "PSEUDAY")
        members, _ = rotation_state(session, primary.id)
        assert members == [anna.id]  # from the new account only
        emails = set(
            session.execute(
                select(PagerDutyUser.email_key).where(PagerDutyUser.connection_id == new.id)
            ).scalars()
        )
        assert emails == {"anna@euco.example", "ben@euco.example"}


# --- a worker SIGKILLed in the middle of a disconnect -------------------------------------------


def _isolated_app(prefix: str) -> Celery:
    """A Celery client on its own Redis key prefix, so only our victim worker sees its tasks
    (the shared live workers of this test process consume the normal prefix)."""
    import celeryconfig

    isolated = Celery("rrpd-killtest")
    isolated.config_from_object("celeryconfig")
    options = {**celeryconfig.broker_transport_options, "global_keyprefix": f"{prefix}:"}
    isolated.conf.broker_transport_options = options
    isolated.conf.result_backend_transport_options = options
    return isolated


class _Victims:
    """Starts ``rrpd worker`` processes on the isolated prefix, one at a time."""

    def __init__(self, stack: ExitStack, celery: Celery, env: dict[str, str]) -> None:
        self.stack, self.celery, self.env = stack, celery, env

    def start(self) -> Any:
        proc = self.stack.enter_context(
            processes.rrpd_process(
                "worker-killtest",
                "worker",
                "--queues",
                "interactive",
                "--concurrency",
                "1",
                env=self.env,
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"victim worker died; see {proc.log_path}"
            ping = self.celery.send_task("rrpd.ping", kwargs={"payload": "ready"})
            try:
                if ping.get(timeout=3) == {"reply": "ready"}:
                    return proc
            except Exception:
                time.sleep(0.2)
        raise TimeoutError("victim worker did not start")


@contextmanager
def _lock_rows(point: str, demo: Any) -> Iterator[Any]:
    """Hold a row lock the disconnect needs at a given step, so the kill lands mid-transaction.

    Order of the disconnect's statements: lock the connection; mark it disconnecting and lock
    the bound rotations; unbind them; delete pending logins; delete the mirror.
    """
    statements = {
        "connection": select(PagerDutyConnection.id).where(
            PagerDutyConnection.id == demo.connection_id
        ),
        "rotations": select(Rotation.id).where(Rotation.id == demo.rotations["fts"]),
        "pending_login": select(OAuthAuthorization.id).where(
            OAuthAuthorization.workspace_id == demo.workspace_id
        ),
        "mirror": select(PagerDutyUser.id)
        .where(PagerDutyUser.connection_id == demo.connection_id)
        .limit(1),
    }
    holder = session_factory()()
    holder.execute(statements[point].with_for_update())
    try:
        yield holder
    finally:
        holder.rollback()
        holder.close()


KILL_POINTS = ("connection", "rotations", "pending_login", "mirror", "random", "random")


def test_worker_sigkilled_mid_disconnect_then_the_task_completes(session, sim) -> None:
    """SIGKILL the worker at several points of a disconnect; a fresh worker then completes it.

    Redis redelivers an unacknowledged message only after the visibility timeout (1,200 s), so
    the redelivery is done by hand: the same task (same id, same arguments) is sent again, as
    Redis would. The kill points are made deterministic by holding, from the test, a row lock
    the disconnect needs at that step: the worker is then provably inside its transaction when
    it dies. Two more kills land at a random moment (before, during or after the commit).
    """
    prefix = f"{get_settings().redis_key_prefix}-kill"
    celery = _isolated_app(prefix)
    env = {
        "RRPD_REDIS_KEY_PREFIX": prefix,
        # Not the outbox relay: the shared workers publish this database's outbox rows.
        "RRPD_WORKER_LOOPS": "intake,redelivery",
        "RRPD_PAGERDUTY_API_URL": sim.base_url,
        "RRPD_PAGERDUTY_EU_API_URL": sim.eu_base_url,
        "RRPD_PAGERDUTY_IDENTITY_URL": sim.identity_url,
    }
    landed: Counter[str] = Counter()
    with ExitStack() as stack:
        victims = _Victims(stack, celery, env)
        victim = victims.start()
        for point in KILL_POINTS:
            demo = arrange_demo(session, sim)
            pending_login(session, demo.workspace_id)
            assert sync.sync_connection(demo.connection_id, client_factory=fast_client).status == (
                "succeeded"
            )
            before = _people(session, demo)
            task_id = str(uuid.uuid4())
            kwargs = {
                "connection_id": str(demo.connection_id),
                "actor_member_id": str(demo.members["alice"]),
            }
            if point == "random":
                celery.send_task(DISCONNECT, kwargs=kwargs, task_id=task_id)
                time.sleep(random.uniform(0.0, 0.3))
                processes.kill_hard(victim)
            else:
                with _lock_rows(point, demo):
                    celery.send_task(DISCONNECT, kwargs=kwargs, task_id=task_id)
                    assert waiting_on_a_lock(), f"the disconnect never reached step {point!r}"
                    processes.kill_hard(victim)
                # Our lock is released: the dead worker's transaction rolls back.
                session.rollback()
                session.expire_all()
                conn = session.get(PagerDutyConnection, demo.connection_id)
                # Nothing of a half-done disconnect is visible.
                assert conn.status == "connected"
                assert conn.api_key is not None
                assert sum(mirror_counts(session, demo.connection_id).values()) > 0
                assert session.get(Rotation, demo.rotations["primary"]).mode == "pagerduty"
            session.rollback()
            session.expire_all()
            status = session.get(PagerDutyConnection, demo.connection_id).status
            landed["committed" if status == "disconnected" else "rolled back"] += 1

            victim = victims.start()
            result = celery.send_task(DISCONNECT, kwargs=kwargs, task_id=task_id).get(timeout=30)
            assert result["status"] in ("disconnected", "already_disconnected")
            assert_disconnected(session, demo)
            assert _people(session, demo) == before
    assert landed["rolled back"] >= 4, landed

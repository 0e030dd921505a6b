"""The task contract is declared once (workers/tasking/contract.py); everything agrees with it."""

from __future__ import annotations

import inspect
import random
import uuid
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

import celeryconfig
from workers.tasking import contract, docs, outcomes
from workers.tasking.app import TASK_BASES, app
from workers.tasking.checks import Refused
from workers.tasking.contract import MAX_RETRY_COUNTDOWN, RETRY_POLICIES, TASKS, Family

ROOT = Path(__file__).resolve().parents[4]


def _registered() -> None:
    for module in sorted({spec.module for spec in TASKS}):
        __import__(module)


def test_docs_task_table_is_the_contract() -> None:
    doc = (ROOT / "docs" / "tasks.md").read_text()
    assert (doc.count(docs.DOC_BEGIN), doc.count(docs.DOC_END)) == (1, 1)
    start, end = doc.index(docs.DOC_BEGIN), doc.index(docs.DOC_END) + len(docs.DOC_END)
    assert doc[start:end] == docs.render_task_tables(), (
        "docs/tasks.md's task table differs from workers/tasking/contract.py: paste the output "
        "of `python -m workers.tasking.docs` between its markers"
    )


# The public names and where each is routed, as other services rely on them (docs/tasks.md).
PUBLIC_ROUTES = [
    ("pagerduty.validate_api_key", "interactive"),
    ("pagerduty.exchange_oauth_code", "interactive"),
    ("pagerduty.refresh_token", "interactive"),
    ("pagerduty.refresh_expiring_tokens", "schedule"),
    ("pagerduty.sync_connection", "sync"),
    ("pagerduty.check_connections", "sync"),
    ("pagerduty.schedule_syncs", "schedule"),
    ("pagerduty.disconnect", "interactive"),
    ("pagerduty.revoke_tokens", "interactive"),
    ("rrpd.ping", "interactive"),
]


def test_public_names_are_unchanged() -> None:
    assert [spec.name for spec in TASKS] == [name for name, _ in PUBLIC_ROUTES]


@pytest.mark.parametrize(("name", "queue"), PUBLIC_ROUTES, ids=[n for n, _ in PUBLIC_ROUTES])
def test_each_task_is_routed_to_its_queue_with_bounded_limits(name: str, queue: str) -> None:
    """Read from the registered tasks and Celery's router, as a sender by name is routed."""
    _registered()
    assert app.amqp.router.route({}, name)["queue"].name == queue
    task = app.tasks[name]
    assert task.queue == queue
    assert task.acks_late
    assert task.soft_time_limit < task.time_limit <= 300


def test_registered_tasks_follow_the_contract() -> None:
    _registered()
    for spec in TASKS:
        task = app.tasks[spec.name]
        assert isinstance(task, TASK_BASES[spec.family]), spec.name
        assert (task.queue, task.soft_time_limit, task.time_limit, task.max_retries) == (
            spec.queue,
            spec.soft_time_limit,
            spec.time_limit,
            spec.max_retries,
        ), spec.name
        # Periodic work (beat's rounds) stores no result; everything else keeps its result.
        assert task.acks_late
        assert task.ignore_result == (not spec.store_result)
        params = list(inspect.signature(task.run).parameters.values())
        assert [p.name for p in params] == [k.name for k in spec.kwargs]


def test_celery_configuration_is_derived_from_the_contract() -> None:
    assert celeryconfig.task_routes == {s.name: {"queue": s.queue} for s in TASKS}
    assert {q.name for q in celeryconfig.task_queues} == set(contract.QUEUES)
    beat = {entry["task"] for entry in celeryconfig.beat_schedule.values()}
    assert beat == {s.name for s in TASKS if s.beat is not None}
    assert max(s.time_limit for s in TASKS) + MAX_RETRY_COUNTDOWN < celeryconfig.VISIBILITY_TIMEOUT


def test_a_task_that_differs_from_its_declaration_is_refused() -> None:
    from workers.tasking.app import contract_task

    with pytest.raises(TypeError, match="the contract says"):

        @contract_task(contract.PING)
        def ping(self, *, payload: str = "pong", extra: int = 1):  # type: ignore[no-untyped-def]
            return {}

    with pytest.raises(TypeError, match="default differs"):

        @contract_task(contract.PING)
        def ping2(self, *, payload: str = "other"):  # type: ignore[no-untyped-def]
            return {}


def test_enqueue_refuses_what_the_contract_does_not_declare() -> None:
    with pytest.raises(ValueError, match="takes no argument api_key"):
        contract.VALIDATE_API_KEY.check_kwargs(
            {"connection_id": "x", "generation": 1, "api_key": "u+secret"}
        )
    with pytest.raises(ValueError, match="needs generation"):
        contract.VALIDATE_API_KEY.check_kwargs({"connection_id": "x"})


@pytest.mark.parametrize("family", [f for f in Family if RETRY_POLICIES[f] is not None])
def test_every_retry_policy_is_capped_with_full_jitter(family: Family) -> None:
    policy = RETRY_POLICIES[family]
    assert policy is not None
    rng = random.Random(3)
    for n in range(12):
        ceiling = min(policy.cap, policy.base * 2**n)
        waits = [policy.countdown(n, rng=rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        # Full jitter: the waits spread over the whole range, not bunched at the ceiling.
        assert max(waits) > 0.8 * ceiling
        assert min(waits) < 0.2 * ceiling
    if policy.honours_reset:
        wait = policy.countdown(0, reset_after=42.0, rng=rng)
        assert 42.0 <= wait <= 42.0 + policy.reset_jitter
    assert policy.countdown(0, reset_after=10_000.0) == MAX_RETRY_COUNTDOWN


def test_values_are_checked_against_the_contract() -> None:
    cid = uuid.uuid4()
    assert contract.SYNC_CONNECTION.check_kwargs({"connection_id": cid, "kind": "manual"}) == {
        "connection_id": str(cid),
        "kind": "manual",
    }
    assert contract.SYNC_CONNECTION.check_kwargs({"connection_id": str(cid).upper()}) == {
        "connection_id": str(cid)
    }
    refused = {
        "connection_id must be a UUID, got 'x'": {"connection_id": "x"},
        "connection_id must be a UUID, got 7": {"connection_id": 7},
        "kind must be one of scheduled, manual, initial, binding; got 'bogus'": {
            "connection_id": str(cid),
            "kind": "bogus",
        },
    }
    for error, kwargs in refused.items():
        with pytest.raises(Refused) as caught:
            contract.SYNC_CONNECTION.check_kwargs(kwargs)
        assert str(caught.value) == error
    with pytest.raises(Refused, match="generation must be a whole number, got True"):
        contract.VALIDATE_API_KEY.check_kwargs({"connection_id": str(cid), "generation": True})
    with pytest.raises(Refused, match="keyword arguments only"):
        contract.DISCONNECT.check_message([str(cid)], {})
    assert contract.DISCONNECT.check_kwargs({"connection_id": str(cid), "actor_member_id": None})
    # An untrusted value is shown short.
    with pytest.raises(Refused) as caught:
        contract.REFRESH_TOKEN.check_kwargs({"connection_id": "y" * 500})
    assert len(str(caught.value)) < 80


def test_a_refused_message_answers_in_words_without_running() -> None:
    _registered()
    task = app.tasks["pagerduty.disconnect"]
    assert task(connection_id="not-a-uuid") == {
        "status": "refused",
        "task": "pagerduty.disconnect",
        "error": "connection_id must be a UUID, got 'not-a-uuid'",
    }


def _sync_statuses() -> set[str]:
    """Every ``status`` a sync's ``SyncResult`` can carry: it is typed ``Outcome``
    (workers/sync/kinds.py), so mypy refuses any other word where a result is made."""
    from workers.sync.kinds import Outcome as SyncOutcome
    from workers.sync.records import SyncResult

    assert SyncResult.__annotations__["status"] in ("Outcome", SyncOutcome)
    return {o.value for o in SyncOutcome}


def test_the_result_words_are_the_ones_the_code_returns() -> None:
    from tasks.connections import RefreshOutcome
    from workers.connections.activation import Outcome
    from workers.disconnect.transaction import DisconnectResult

    def words(task: str) -> set[str]:
        return {w.word for w in outcomes.RESULT_WORDS[task][1]}

    assert set(outcomes.SENDERS) == {spec.name for spec in TASKS}
    assert set(outcomes.RESULT_WORDS) <= set(outcomes.SENDERS)
    assert words("pagerduty.validate_api_key") == set(get_args(Outcome))
    assert words("pagerduty.exchange_oauth_code") == set(get_args(Outcome))
    assert words("pagerduty.refresh_token") == set(get_args(RefreshOutcome))
    # A disconnect's words are its enum: the code returns a member (typed), the docs its rows.
    assert get_type_hints(DisconnectResult)["status"] is outcomes.DisconnectOutcome
    assert words("pagerduty.disconnect") == {o.value for o in outcomes.DisconnectOutcome}
    assert set(outcomes.DISCONNECT_MEANINGS) == set(outcomes.DisconnectOutcome)
    assert words("pagerduty.sync_connection") == _sync_statuses()
    assert outcomes.REFUSED.word == "refused"
    _registered()
    refused = app.tasks["rrpd.ping"](payload=7)  # type: ignore[misc]
    assert refused["status"] == outcomes.REFUSED.word

"""The one table of what each connection status means (models.connection.STATUS_MEANINGS):
every status has a row, the rows agree with the lifecycle and the deadlines, and every set the
code used to spell out by hand is read from it."""

from __future__ import annotations

from models.connection import (
    ALLOWED_TRANSITIONS,
    PENDING_WORK_AFTER,
    STATUS_MEANINGS,
    SYNC_NOW_AFTER,
    ConnectionStatus,
    statuses,
)
from workers.deadlines.drive import BACKOFF, MAX_VALIDATION_DRIVES

S = ConnectionStatus


def test_every_status_has_a_meaning() -> None:
    assert set(STATUS_MEANINGS) == set(ConnectionStatus)
    assert set(ALLOWED_TRANSITIONS) == set(STATUS_MEANINGS)


def test_every_live_status_has_words_for_people_and_a_reason_when_it_does_not_sync() -> None:
    for status, meaning in STATUS_MEANINGS.items():
        if status is S.DISCONNECTED:
            assert meaning.words is None  # "PagerDuty is not connected." covers it
            continue
        assert meaning.words, status
        assert meaning.syncs != bool(meaning.no_sync_because), status


def test_a_status_with_a_deadline_has_a_stuck_problem_and_no_other() -> None:
    for status, meaning in STATUS_MEANINGS.items():
        assert (meaning.deadline is None) == (meaning.stuck_problem is None), status
        # A person must act on these; no task is on its way, so none can be late.
        assert not (meaning.needs_attention and meaning.deadline), status


def test_stuck_is_reported_while_the_deadlines_loop_still_drives_the_validation() -> None:
    # `rrpd attention` once called a validation stuck after 15 minutes, long after the
    # deadlines had ended it invalid; now both read the same deadline.
    first = STATUS_MEANINGS[S.VALIDATING].deadline
    assert first == PENDING_WORK_AFTER[S.VALIDATING] == BACKOFF[S.VALIDATING][0]
    base, cap = BACKOFF[S.VALIDATING]
    ended = first + sum(min(cap, base * 2 ** (n - 1)) for n in range(1, MAX_VALIDATION_DRIVES + 1))
    assert first < ended == 48  # ended invalid 48 s after it began; stuck from 8 s
    assert STATUS_MEANINGS[S.CONNECTED].deadline == SYNC_NOW_AFTER == BACKOFF[S.CONNECTED][0]
    assert PENDING_WORK_AFTER[S.DISCONNECTING] == BACKOFF[S.DISCONNECTING][0]


def test_the_sets_the_features_use_are_the_table_s() -> None:
    from rrpd.ops import ATTENTION_STATUSES, NO_SYNC_BECAUSE, STUCK_PROBLEMS
    from workers.connections.messages import STATUS_WORDS
    from workers.connections.tokens import USABLE
    from workers.deadlines.views import PENDING_STATUSES
    from workers.handoffs.apply import APPLYING

    assert set(USABLE) == {S.CONNECTED, S.VALIDATING}
    assert set(APPLYING) == {S.CONNECTED, S.VALIDATING, S.NEEDS_REAUTH}
    assert set(ATTENTION_STATUSES) == {S.NEEDS_REAUTH, S.INVALID}
    assert set(PENDING_STATUSES) == {S.VALIDATING, S.DISCONNECTING, S.CONNECTED}
    assert set(PENDING_WORK_AFTER) == {S.VALIDATING, S.DISCONNECTING}  # entering asks a task
    assert set(NO_SYNC_BECAUSE) == statuses(lambda m: m.no_sync_because is not None)
    assert set(STUCK_PROBLEMS) == set(PENDING_STATUSES)
    assert set(STATUS_WORDS) == set(ConnectionStatus) - {S.DISCONNECTED}
    assert USABLE <= APPLYING  # a connection whose credentials work applies its plan

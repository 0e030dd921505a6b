"""The diff of hand-made snapshots (workers/sync/apply.py): matching, overlaps, exact counts;
no PagerDuty."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import (
    Member,
    PagerDutyOnCall,
)
from tests.support.sync import (
    Sched,
    apply_snapshot,
    rotation_state,
    snapshot_of,
)
from tests.support.sync import small as small
from workers.pagerduty.records import User

pytestmark = pytest.mark.postgres_only


def test_matching_is_case_insensitive_and_trimmed_and_unmatched_is_kept(session, small) -> None:
    snap = snapshot_of(
        [
            User("U1", "Ann", "  ANN@example.COM\t"),
            User("U2", "Ben", "ben@EXAMPLE.com"),
            User("U3", "Stranger", "stranger@example.com"),
            User("U4", "No email", None),
        ],
        # U9 is on call but not in the user list at all (e.g. not visible to the credential).
        [Sched("PS1", "S", "v2", "UTC", ("U3", "U2", "U1"), ("U3", "U9"))],
    )
    result = apply_snapshot(session, small.connection_id, snap)

    assert result.unmatched_on_call == 2
    members, duty = rotation_state(session, small.rotations["bound"])
    assert members == [small.members["ben"], small.members["ann"]]  # schedule order, matched only
    assert duty == set()  # everyone on call is unmatched: nobody on duty, and no failure
    oncall = set(
        session.execute(
            select(PagerDutyOnCall.user_pagerduty_id).where(
                PagerDutyOnCall.connection_id == small.connection_id
            )
        ).scalars()
    )
    assert oncall == {"U3", "U9"}  # kept, to be shown as unmatched


def test_overlap_nobody_on_call_and_exact_diff_counts(session, small) -> None:
    users = [User("U1", "Ann", "ann@example.com"), User("U2", "Ben", "ben@example.com")]
    first = apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(users, [Sched("PS1", "S", "v3", "UTC", ("U1", "U2"), ("U1", "U2"))]),
    )
    # 2 users + 1 schedule + 2 schedule members + 2 on-calls + 2 rotation members + 2 on duty.
    assert (first.created, first.deleted) == (11, 0)
    assert first.updated == 1  # the rotation's last_synced_at (first sync after binding)
    _, duty = rotation_state(session, small.rotations["bound"])
    assert duty == {small.members["ann"], small.members["ben"]}  # overlap: two at once

    # Nobody on call now, members swapped, Ben renamed, a third user arrives.
    second = apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(
            [*users[:1], User("U2", "Benjamin", "ben@example.com"), User("U3", "Cy", "cy@x.org")],
            [Sched("PS1", "S", "v3", "UTC", ("U2", "U1"), ())],
        ),
    )
    # created: U3. updated: U2's name, 2 schedule-member positions, 2 rotation-member positions,
    # the rotation's last_synced_at. deleted: 2 on-calls, 2 on-duty rows.
    assert (second.created, second.updated, second.deleted) == (1, 6, 4)
    members, duty = rotation_state(session, small.rotations["bound"])
    assert members == [small.members["ben"], small.members["ann"]]
    assert duty == set()

    third = apply_snapshot(
        session,
        small.connection_id,
        snapshot_of(
            [*users[:1], User("U2", "Benjamin", "ben@example.com"), User("U3", "Cy", "cy@x.org")],
            [Sched("PS1", "S", "v3", "UTC", ("U2", "U1"), ())],
        ),
    )
    assert (third.created, third.updated, third.deleted) == (0, 0, 0)


def test_a_new_member_email_in_round_robin_is_matched_on_the_next_sync(session, small) -> None:
    snap = snapshot_of(
        [User("U7", "Dee", "dee@example.com")],
        [Sched("PS1", "S", "v2", "UTC", ("U7",), ("U7",))],
    )
    assert apply_snapshot(session, small.connection_id, snap).unmatched_on_call == 1
    session.rollback()
    session.get(Member, small.members["cy"]).email = " Dee@Example.com"
    session.commit()
    result = apply_snapshot(session, small.connection_id, snap)
    assert result.unmatched_on_call == 0
    assert rotation_state(session, small.rotations["bound"]) == (
        [small.members["cy"]],
        {small.members["cy"]},
    )

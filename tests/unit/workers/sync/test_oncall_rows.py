"""The row counts a check packs its /oncalls batches by, kept per connection in Redis (real
Redis): the next check gets what the last one met, and a quiet check writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest

from workers.core.redis import client, key
from workers.pagerduty.snapshot import AccountSnapshot
from workers.sync import oncall_rows

pytestmark = pytest.mark.usefixtures("redis_client")


def _check(rows: Mapping[str, int]) -> AccountSnapshot:
    return AccountSnapshot(
        fetched_at=None,  # type: ignore[arg-type]
        users=(),
        users_complete=False,
        schedules=(),
        oncall_rows=rows,
    )


def test_the_next_check_gets_the_counts_the_last_one_met() -> None:
    cid = uuid.uuid4()
    hints: list[Mapping[str, int] | None] = []

    def read(hint: Mapping[str, int] | None) -> AccountSnapshot:
        hints.append(hint)
        return _check({"PS1": 2, "PS2": 1})

    oncall_rows.packed(cid, read)
    oncall_rows.packed(cid, read)

    assert hints == [None, {"PS1": 2, "PS2": 1}]  # the first has none: batches of 100 ids
    assert 0 < client().ttl(key("oncall-rows", str(cid))) <= oncall_rows.TTL_SECONDS
    client().delete(key("oncall-rows", str(cid)))


def test_only_changed_counts_are_written() -> None:
    cid = uuid.uuid4()
    oncall_rows.save(cid, None, {"PS1": 2, "PS2": 1})
    name = key("oncall-rows", str(cid))
    client().hset(name, "PS2", 9)  # not in the check's answer below: left alone

    oncall_rows.save(cid, {"PS1": 2}, {"PS1": 2})  # unchanged: no write at all
    oncall_rows.save(cid, {"PS1": 2}, {"PS1": 3})

    assert oncall_rows.load(cid) == {"PS1": 3, "PS2": 9}
    client().delete(name)

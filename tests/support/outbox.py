"""What a test's transactions committed to the outbox, and an outbox no relay may publish.

``enqueue`` writes a task as an outbox row in the caller's transaction; the relay publishes it
after commit. Unit tests that check *what* would run read the committed rows (a separate
connection sees exactly what was committed, nothing of an open or rolled-back transaction)
while ``paused_outbox`` keeps every relay - this process's fast path and the relay loops of
the live workers other tests started - from publishing them: it holds each lane's advisory lock,
which a relay must take before it publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload

from sqlalchemy import select, text

from models import OutboxKind, OutboxMessage
from workers.core.db import get_engine
from workers.outbox.relay import LANES, lock_key

Format = Callable[[OutboxMessage], dict[str, Any]]


def as_call(row: OutboxMessage) -> dict[str, Any]:
    """The shape of a ``send_task`` call: name, args, kwargs, task id, countdown."""
    return {
        "name": row.name,
        "args": None,
        "kwargs": row.payload["kwargs"],
        "task_id": row.payload["task_id"],
        "countdown": row.payload.get("countdown"),
    }


def as_flat(row: OutboxMessage) -> dict[str, Any]:
    """Name and arguments in one dict."""
    return {"name": row.name, **row.payload["kwargs"]}


def committed(kind: OutboxKind = OutboxKind.TASK) -> list[OutboxMessage]:
    from sqlalchemy.orm import Session

    with Session(get_engine()) as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        ).all()
        session.expunge_all()
        return list(rows)


def committed_events() -> list[dict[str, Any]]:
    return [row.payload for row in committed(OutboxKind.EVENT)]


class CommittedTasks(Sequence[dict[str, Any]]):
    """A live view: every access reads the committed task rows again."""

    def __init__(self, fmt: Format = as_call) -> None:
        self._fmt = fmt

    def _items(self) -> list[dict[str, Any]]:
        return [self._fmt(row) for row in committed()]

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        return self._items() == other

    def __repr__(self) -> str:
        return repr(self._items())

    __hash__ = None  # type: ignore[assignment]


@contextmanager
def paused_outbox() -> Iterator[None]:
    """No relay (of any process on this database) publishes while this is held: PostgreSQL's
    advisory locks, or on SQLite the lane lock files the relays take (workers/outbox/relay.py)."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        import fcntl

        from workers.core.settings import get_settings

        var_dir = get_settings().var_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        handles = [(var_dir / f"outbox-{lane}.lock").open("a") for lane in LANES]
        try:
            for handle in handles:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            for handle in handles:
                handle.close()  # closing releases the lock
        return
    with engine.connect() as conn:
        for lane in LANES:
            classid, objid = lock_key(lane)
            conn.execute(text("SELECT pg_advisory_lock(:c, :o)"), {"c": classid, "o": objid})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()


@contextmanager
def captured_direct_publishes(monkeypatch: Any) -> Iterator[list[dict[str, Any]]]:
    """Messages published without the outbox (beat's fan-out, the refresh sweep), caught."""
    from workers.outbox import publisher

    sent: list[dict[str, Any]] = []

    def send(name: str, kwargs: dict[str, Any], **options: Any) -> str:
        options.pop("producer", None)
        sent.append({"name": name, "kwargs": kwargs, **options})
        return str(options.get("task_id") or len(sent))

    def send_many(messages: Any, **options: Any) -> int:
        count = 0
        for name, kwargs, task_id, countdown in messages:
            send(name, kwargs, task_id=task_id, countdown=countdown, **options)
            count += 1
        return count

    monkeypatch.setattr(publisher, "send", send)
    monkeypatch.setattr(publisher, "send_many", send_many)
    yield sent

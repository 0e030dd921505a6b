"""Several PagerDuty reads in flight at once for one credential, on threads.

Threads, not asyncio: every read goes through the same synchronous transport (the shared
limiter, bounded retries, counters) on the process's thread-safe pooled ``httpx.Client``, and
the Celery tasks calling it are synchronous; an async client would duplicate the transport for
no gain at 8 requests in flight. docs/pagerduty-client.md has the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_concurrent(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    max_in_flight: int,
    per_item: tuple[type[BaseException], ...] = (),
) -> list[R | BaseException]:
    """``fn`` over ``items`` with up to ``max_in_flight`` calls at once, results in order.

    An error of a ``per_item`` type is returned in its item's place; any other error stops the
    calls not yet started and is raised (the first in item order among those that failed), as
    the sequential loop it replaces would have raised it.
    """
    work = list(items)
    if max_in_flight <= 1 or len(work) <= 1:
        return [_call(fn, item, per_item) for item in work]
    with ThreadPoolExecutor(
        max_workers=min(max_in_flight, len(work)), thread_name_prefix="pd"
    ) as pool:
        futures = [pool.submit(fn, item) for item in work]
        for finished in as_completed(futures):
            if _fatal(finished, per_item):
                for future in futures:
                    future.cancel()
                break
    out: list[R | BaseException] = []
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is None:
            out.append(future.result())
        elif isinstance(error, per_item):
            out.append(error)
        else:
            raise error
    return out


def _call(fn: Callable[[T], R], item: T, per_item: tuple[type[BaseException], ...]) -> Any:
    try:
        return fn(item)
    except per_item as exc:
        return exc


def _fatal(future: Future[Any], per_item: tuple[type[BaseException], ...]) -> bool:
    error = None if future.cancelled() else future.exception()
    return error is not None and not isinstance(error, per_item)

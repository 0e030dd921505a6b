"""Per-process resources and the one fork hook that forgets them in a forked child.

Celery's prefork pool forks worker children from a parent that may already hold pooled
connections (database, Redis, HTTP) and locks. A child must never use the parent's sockets, and
a lock held by another thread at the moment of the fork stays held for ever in the child. Every
module that keeps a process-wide resource registers a reset here with ``after_fork``; the single
``os.register_at_fork`` hook below runs them all in every forked child, before any other code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_resets: list[Callable[[], None]] = []


def after_fork(reset: Callable[[], None]) -> Callable[[], None]:
    """Register ``reset`` to run in every forked child (usable as a decorator)."""
    _resets.append(reset)
    return reset


def forget_inherited_resources() -> None:
    """Run every registered reset: what a forked child does first (tests may call it too)."""
    for reset in _resets:
        reset()


os.register_at_fork(after_in_child=forget_inherited_resources)

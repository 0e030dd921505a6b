"""Deadlines: no state of a connection waits on a message alone.

A connection that expects a task (``validating``, ``disconnecting``, a requested "sync now")
carries ``drive_at``, and one checking a pending credential (a key or an OAuth login)
``pending_drive_at``; ``drive`` is the ``deadlines`` loop of every worker node, which enqueues
the task again for rows past it. docs/operations.md ("Deadlines"), docs/design.md.

Importing this package registers the loop (the worker imports it through the task modules).
"""

from __future__ import annotations

from workers.deadlines import drive
from workers.tasking.loops import register_loop

# One indexed query a second per node when nothing is due; a lost message is driven again at
# most a second after its deadline.
register_loop("deadlines", drive.step, max_sleep=1.0)

"""Scheduled handoffs: a bound rotation's upcoming on-call changes, applied at their instant.

``on_call`` is THE writer of who is on call, for the sync and this loop alike. ``plan`` turns
the sync's rendered timeline into ``scheduled_handoffs`` rows (in the sync's apply
transaction); ``apply`` is the ``handoffs`` worker loop that makes due rows true, once.
``views`` tells people who comes on duty next. docs/sync-and-disconnect.md ("Handoffs").

Importing this package registers the loop (the worker imports it through the task modules).
"""

from __future__ import annotations

from workers.handoffs import apply
from workers.tasking.loops import register_loop

# max_sleep 1 s: rows another node's sync planned are seen within a second; a round sleeps
# exactly until the earliest known instant when that is sooner.
register_loop("handoffs", apply.step, max_sleep=1.0)

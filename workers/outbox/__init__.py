"""The transactional outbox: tasks and events are rows written with the change that causes them.

* ``workers.outbox.writer``: ``add_task`` (used by ``workers.tasking.enqueue.enqueue``) and
  ``add_event`` (used by ``workers.events``) insert into ``outbox_messages`` in the caller's
  transaction;
* ``workers.outbox.relay``: publishes committed rows in id order per lane (``lanes``) - right
  after the commit (``fastpath``, a thread of the writing process) and from the
  ``outbox-relay`` loop of every worker node - and deletes published rows after their
  retention (``outbox-retention``);
* ``workers.outbox.publisher``: task messages without a result-backend subscription, with short
  timeouts.

Importing this package registers the two loops (the worker imports it through the task
modules) and, for short-lived processes such as ``rrpd sync-now``, waits at exit (up to 3 s)
for the fast path to publish what the process committed.
"""

from __future__ import annotations

import atexit

from workers.outbox import fastpath, relay
from workers.tasking.loops import register_loop

register_loop("outbox-relay", relay.RelayLoop().step, max_sleep=10.0)
register_loop("outbox-retention", relay.retention_step, max_sleep=60.0)
atexit.register(fastpath.drain, 3.0)

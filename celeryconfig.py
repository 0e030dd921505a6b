"""Celery settings, all derived from the one settings object (``workers.core.settings``).

Loaded by ``workers.tasking.app`` via ``config_from_object``. Why each value is what it is:
docs/design.md ("Celery").
"""

from __future__ import annotations

from kombu.entity import Exchange, Queue

from workers.core.settings import get_settings
from workers.tasking import contract

_settings = get_settings()

# --- Time limits -------------------------------------------------------------------------------
# Every task declares its own limits in the contract; these are the ceilings. The visibility
# timeout must exceed the longest task time limit plus the longest retry countdown, or Redis
# redelivers a message that is still being worked on (or still waiting for its ETA) to a second
# worker.
TASK_SOFT_TIME_LIMIT = contract.TASK_SOFT_TIME_LIMIT
TASK_TIME_LIMIT = contract.TASK_TIME_LIMIT
MAX_RETRY_COUNTDOWN = int(contract.MAX_RETRY_COUNTDOWN)
VISIBILITY_TIMEOUT = TASK_TIME_LIMIT + MAX_RETRY_COUNTDOWN + 300  # 1,200 s

# A message redelivered more often than this is poison (it kills the worker every time).
MAX_DELIVERIES = 5

broker_url = _settings.broker_url
result_backend = _settings.result_backend or None
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "global_keyprefix": f"{_settings.redis_key_prefix}:",
}
# The same value in all three places (Celery's Redis caveat): broker, result backend, and the
# top-level setting read by the Redis result backend's own consumers.
result_backend_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "global_keyprefix": f"{_settings.redis_key_prefix}:",
}
visibility_timeout = VISIBILITY_TIMEOUT

# --- Serialization: JSON only, so no message can execute code on a worker ----------------------
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# --- Delivery guarantees ------------------------------------------------------------------------
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True
task_acks_on_timeout = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
task_soft_time_limit = TASK_SOFT_TIME_LIMIT
task_time_limit = TASK_TIME_LIMIT

# --- Results: off unless a task asks; short-lived; never the call's arguments --------------------
task_ignore_result = True
result_expires = 3600
result_extended = False

# --- Events for Flower --------------------------------------------------------------------------
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

# --- Time ---------------------------------------------------------------------------------------
enable_utc = True
timezone = "UTC"

# --- Queues and routing: from the task contract (workers/tasking/contract.py) ----------------
QUEUES = contract.QUEUES
task_default_queue = contract.SYNC
task_queues = tuple(
    Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
    for name in QUEUES
)
task_create_missing_queues = False
task_routes = contract.task_routes()

# --- Beat: RedBeat keeps the schedule and a lock in Redis, so several beat processes are safe ----
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _settings.effective_redbeat_url
redbeat_key_prefix = f"{_settings.redis_key_prefix}:redbeat:"
redbeat_lock_timeout = max(5 * _settings.sync_interval_seconds, 60)
beat_max_loop_interval = 5
beat_schedule = contract.beat_schedule(_settings)

worker_hijack_root_logger = False

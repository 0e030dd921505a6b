"""Service metrics, counted in Redis so every worker process and machine adds to one total.

Prometheus scrapes them from the API's ``/metrics`` (rendered by ``render``). Counting is best
effort: a metrics failure never fails a task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import redis

from workers.core.redis import client, key

log = logging.getLogger(__name__)

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "rrpd_syncs_total": ("counter", "Connection syncs finished, by outcome."),
    "rrpd_sync_duration_seconds_sum": ("counter", "Total seconds spent in syncs."),
    "rrpd_sync_duration_seconds_count": ("counter", "Number of timed syncs."),
    "rrpd_pagerduty_requests_total": ("counter", "HTTP requests made to PagerDuty, by endpoint."),
    "rrpd_pagerduty_rate_limited_total": ("counter", "429 answers from PagerDuty, by endpoint."),
    "rrpd_token_refreshes_total": ("counter", "OAuth token refreshes, by outcome."),
    "rrpd_connection_checks_total": ("counter", "Credential validations and code exchanges."),
    "rrpd_fanout_runs_total": ("counter", "Fan-out tasks run (beat rounds and their shards)."),
    "rrpd_fanout_enqueued_total": ("counter", "Scheduled syncs the fan-out published."),
    "rrpd_fanout_duration_seconds_sum": ("counter", "Total seconds spent in fan-out tasks."),
    "rrpd_fanout_duration_seconds_count": ("counter", "Number of timed fan-out tasks."),
    "rrpd_lease_lost_total": ("counter", "Leases a live holder found lapsed or taken over."),
    "rrpd_sync_rechecks_total": ("counter", "Delayed re-checks published for coalesced syncs."),
    "rrpd_task_failures_total": ("counter", "Tasks that ended failed, by task and error class."),
    "rrpd_deadline_drives_total": (
        "counter",
        "Tasks the deadlines loop enqueued again, by the connection's status.",
    ),
}


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _field(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def incr(name: str, amount: float = 1, **labels: str) -> None:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name}")
    try:
        client().hincrbyfloat(key("metrics"), _field(name, labels), amount)
    except redis.RedisError:
        log.debug("metrics unavailable", exc_info=True)


def incr_many(samples: Iterable[tuple[str, float, Mapping[str, str]]]) -> None:
    """Several increments in one pipelined round trip (a sync writes about six)."""
    fields: list[tuple[str, float]] = []
    for name, amount, labels in samples:
        if name not in METRICS:
            raise KeyError(f"unknown metric {name}")
        fields.append((_field(name, labels), amount))
    if not fields:
        return
    try:
        pipe = client().pipeline(transaction=False)
        for field, amount in fields:
            pipe.hincrbyfloat(key("metrics"), field, amount)
        pipe.execute()
    except redis.RedisError:
        log.debug("metrics unavailable", exc_info=True)


def snapshot() -> dict[str, float]:
    raw = client().hgetall(key("metrics"))
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


# Counters rendered as one Prometheus summary family (``<name>_sum`` + ``<name>_count``).
SUMMARIES: dict[str, str] = {
    "rrpd_sync_duration_seconds": "Seconds spent in connection syncs.",
    "rrpd_fanout_duration_seconds": "Seconds spent in fan-out tasks (beat rounds, shards).",
}

# Celery's Redis transport keeps a priority queue as several lists: ``<queue>`` and
# ``<queue>\x06\x16<priority>`` (the same steps Flower's broker page reads).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lengths(queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue (not counting those a worker has reserved)."""
    prefix = f"{key()}:" if key() else ""
    names = list(queues)
    pipe = client().pipeline(transaction=False)
    for name in names:
        for pri in _PRIORITY_STEPS:
            pipe.llen(f"{prefix}{name}{_PRIORITY_SEP}{pri}" if pri else f"{prefix}{name}")
    counts = iter(pipe.execute())
    return {name: sum(next(counts) for _ in _PRIORITY_STEPS) for name in names}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(
    extra_gauges: Mapping[str, float] | None = None,
    *,
    values: Mapping[str, float] | None = None,
    gauge_help: Mapping[str, str] | None = None,
) -> str:
    """Prometheus text exposition of every counter plus the given gauges.

    ``values`` defaults to the counters in Redis (``snapshot()``); ``gauge_help`` gives a HELP
    line per gauge family.
    """
    values = snapshot() if values is None else values
    lines: list[str] = []

    def samples(name: str) -> list[str]:
        return [f"{k} {_number(v)}" for k, v in sorted(values.items()) if k.split("{")[0] == name]

    done: set[str] = set()
    for name, (kind, help_text) in METRICS.items():
        family = next((s for s in SUMMARIES if name in (f"{s}_sum", f"{s}_count")), None)
        if family is not None:
            if family in done:
                continue
            done.add(family)
            lines += [f"# HELP {family} {SUMMARIES[family]}", f"# TYPE {family} summary"]
            lines += samples(f"{family}_sum") + samples(f"{family}_count")
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += samples(name)
    if extra_gauges:
        seen: set[str] = set()
        for key, value in sorted(extra_gauges.items()):
            base = key.split("{")[0]
            if base not in seen:
                if gauge_help and base in gauge_help:
                    lines.append(f"# HELP {base} {gauge_help[base]}")
                lines.append(f"# TYPE {base} gauge")
                seen.add(base)
            lines.append(f"{key} {_number(value)}")
    return "\n".join(lines) + "\n"


def gauge(name: str, **labels: str) -> str:
    """The sample key of a gauge for ``render(extra_gauges=...)``, labels escaped."""
    return _field(name, labels)

"""Service metrics, counted in Redis so every worker process and machine adds to one total.

Prometheus scrapes them from the API's ``/metrics`` (rendered by ``render``). Counting is best
effort: a metrics failure never fails a task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from workers import locks

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
}


def _field(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def incr(name: str, amount: float = 1, **labels: str) -> None:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name}")
    try:
        locks.client().hincrbyfloat(locks.key("metrics"), _field(name, labels), amount)
    except redis.RedisError:
        log.debug("metrics unavailable", exc_info=True)


def snapshot() -> dict[str, float]:
    raw = locks.client().hgetall(locks.key("metrics"))
    return {k.decode(): float(v) for k, v in raw.items()}


def render(extra_gauges: Mapping[str, float] | None = None) -> str:
    """Prometheus text exposition of every counter plus the given gauges."""
    values = snapshot()
    lines: list[str] = []
    for name, (kind, help_text) in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{k} {v}" for k, v in sorted(values.items()) if k.split("{")[0] == name]
    if extra_gauges:
        seen: set[str] = set()
        for key, value in sorted(extra_gauges.items()):
            base = key.split("{")[0]
            if base not in seen:
                lines += [f"# TYPE {base} gauge"]
                seen.add(base)
            lines.append(f"{key} {value}")
    return "\n".join(lines) + "\n"

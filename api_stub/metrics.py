"""``GET /metrics``: Prometheus text for the whole service.

Counters come from Redis (``workers.core.metrics``: every worker process adds to one total); gauges
are computed at scrape time: connections by status and with failing syncs (PostgreSQL), and the
Celery queue lengths (Redis). A source that does not answer is reported as
``rrpd_metrics_source_up{source=...} 0`` rather than failing the scrape.

The endpoint sits on the public API, so it takes HTTP basic auth with the operators' credential,
``RRPD_FLOWER_BASIC_AUTH`` (the same one Flower uses; Prometheus sends it with ``basic_auth``).
With that setting empty it is open, for deployments that only expose the API on a private
network. See docs/operations.md.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

import redis
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from api_stub.errors import ApiError, ErrorResponse
from models import ConnectionStatus, PagerDutyConnection, utcnow
from workers.core import metrics
from workers.core.db import transaction
from workers.core.settings import get_settings
from workers.deadlines.views import PENDING_STATUSES, past_deadline_clause
from workers.outbox.relay import backlog
from workers.sync.fanout import overdue
from workers.tasking.contract import QUEUES

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

GAUGE_HELP = {
    "rrpd_connections": "Live PagerDuty connections, by status.",
    "rrpd_connections_failing_syncs": "Connected connections whose last sync(s) failed.",
    "rrpd_connections_sync_overdue": "Connected connections no scheduled sync reached for "
    "3 intervals (beat stopped, or its rounds fail).",
    "rrpd_connections_past_deadline": "Connections whose pending work (validating, "
    "disconnecting, a sync now) missed its deadline: driven again, or waiting for the deadlines "
    "loop. By status.",
    "rrpd_queue_length": "Messages waiting in a Celery queue.",
    "rrpd_outbox_unpublished": "Outbox rows (tasks, events) committed but not yet published.",
    "rrpd_outbox_oldest_seconds": "Age of the oldest unpublished outbox row (0 when none).",
    "rrpd_metrics_source_up": "1 when a source of these metrics answered the scrape.",
}

# Live statuses only: "disconnected" rows are history and only ever grow.
_STATUSES = [s for s in ConnectionStatus if s is not ConnectionStatus.DISCONNECTED]


def _check_basic_auth(request: Request) -> None:
    expected = get_settings().flower_basic_auth.get_secret_value()
    if not expected:
        return
    # RRPD_FLOWER_BASIC_AUTH may list several comma-separated user:password pairs, as Flower does.
    accepted = [c.strip() for c in expected.split(",") if c.strip()]
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    given = ""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    ok = False
    for credential in accepted:
        # Compare with every credential, so the time taken says nothing about which one matched.
        ok |= hmac.compare_digest(given.encode(), credential.encode())
    if not ok:
        raise ApiError(
            401,
            "unauthenticated",
            "Metrics need HTTP basic auth with the operators' credential (RRPD_FLOWER_BASIC_AUTH).",
            headers={"WWW-Authenticate": 'Basic realm="rrpd metrics"'},
        )


def connection_gauges() -> dict[str, float]:
    with transaction() as session:
        by_status = dict(
            session.execute(
                select(PagerDutyConnection.status, func.count()).group_by(
                    PagerDutyConnection.status
                )
            ).all()
        )
        failing = session.execute(
            select(func.count()).where(
                PagerDutyConnection.status == ConnectionStatus.CONNECTED,
                PagerDutyConnection.consecutive_sync_failures > 0,
            )
        ).scalar_one()
        now = utcnow()
        late = session.execute(select(func.count()).where(overdue(now))).scalar_one()
        past_deadline = dict(
            session.execute(
                select(PagerDutyConnection.status, func.count())
                .where(past_deadline_clause(now))
                .group_by(PagerDutyConnection.status)
            ).all()
        )
    gauges = {
        metrics.gauge("rrpd_connections", status=status): float(by_status.get(status, 0))
        for status in _STATUSES
    }
    gauges[metrics.gauge("rrpd_connections_failing_syncs")] = float(failing)
    gauges[metrics.gauge("rrpd_connections_sync_overdue")] = float(late)
    for status in PENDING_STATUSES:
        gauges[metrics.gauge("rrpd_connections_past_deadline", status=status)] = float(
            past_deadline.get(status, 0)
        )
    for lane, info in backlog().items():
        gauges[metrics.gauge("rrpd_outbox_unpublished", lane=lane)] = float(info["unpublished"])
        oldest = float(info.get("oldest_seconds") or 0.0)
        gauges[metrics.gauge("rrpd_outbox_oldest_seconds", lane=lane)] = oldest
    return gauges


def render_metrics() -> str:
    gauges: dict[str, float] = {}
    up: dict[str, bool] = {}
    try:
        gauges.update(connection_gauges())
        up["database"] = True
    except SQLAlchemyError as exc:
        log.warning("metrics: database unavailable (%s)", type(exc).__name__)
        up["database"] = False
    values: dict[str, float] = {}
    try:
        values = metrics.snapshot()
        for queue, length in metrics.queue_lengths(QUEUES).items():
            gauges[metrics.gauge("rrpd_queue_length", queue=queue)] = float(length)
        up["redis"] = True
    except redis.RedisError as exc:
        log.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
        up["redis"] = False
    for source, answered in up.items():
        gauges[metrics.gauge("rrpd_metrics_source_up", source=source)] = 1.0 if answered else 0.0
    return metrics.render(gauges, values=values, gauge_help=GAUGE_HELP)


@router.get(
    "/metrics",
    summary="Prometheus metrics (basic auth with RRPD_FLOWER_BASIC_AUTH unless it is empty)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format 0.0.4."},
        401: {
            "model": ErrorResponse,
            "description": "No or wrong HTTP basic credential (`unauthenticated`); the operators' "
            "credential is RRPD_FLOWER_BASIC_AUTH. Not sent when that setting is empty.",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'Basic realm="rrpd metrics"',
                    "schema": {"type": "string"},
                }
            },
        },
    },
)
def get_metrics(request: Request) -> Response:
    _check_basic_auth(request)
    return Response(render_metrics(), media_type=CONTENT_TYPE)

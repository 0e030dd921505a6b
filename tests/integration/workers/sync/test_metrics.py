"""A sync reports what it cost at PagerDuty: requests per endpoint, and every 429 received."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pagerduty_sim.server import SimulatorHandle
from tests.support import factories
from tests.support.stack import demo_api_key
from workers.core import metrics
from workers.sync import run as sync


def _value(name: str, endpoint: str) -> float:
    return metrics.snapshot().get(f'{name}{{endpoint="{endpoint}"}}', 0.0)


def test_429s_the_client_retried_itself_are_counted(
    session: Session, sim: SimulatorHandle, redis_client
) -> None:
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, api_key=demo_api_key(sim))
    session.commit()
    fault = {"kind": "error", "path_prefix": "/users", "status": 429, "times": 1}
    sim.control.post("/faults", json=fault).raise_for_status()
    before_429 = _value("rrpd_pagerduty_rate_limited_total", "GET /users")
    before_requests = _value("rrpd_pagerduty_requests_total", "GET /users")

    result = sync.sync_connection(conn.id, kind="manual")

    assert result.status == "succeeded", result.error
    assert _value("rrpd_pagerduty_rate_limited_total", "GET /users") - before_429 == 1
    # The refused request and its successful retry were both made.
    assert _value("rrpd_pagerduty_requests_total", "GET /users") - before_requests == 2

"""``GET /metrics``: Prometheus text with the Redis counters and gauges computed at scrape time."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from api_stub import metrics as metrics_api
from models import ConnectionStatus, utcnow
from tests.support import factories
from workers.core import metrics
from workers.core.redis import key as redis_key
from workers.core.settings import reset_settings_cache

OPS = ("ops", "metrics-test-pass")


@pytest.fixture
def operators_auth(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("RRPD_FLOWER_BASIC_AUTH", ":".join(OPS))
    reset_settings_cache()
    token = base64.b64encode(":".join(OPS).encode()).decode()
    yield {"Authorization": f"Basic {token}"}
    monkeypatch.undo()
    reset_settings_cache()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_metrics_need_the_operators_credential(client, operators_auth) -> None:
    r = client.get("/metrics")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.json()["error"]["code"] == "unauthenticated"
    wrong = base64.b64encode(b"ops:nope").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    ok = client.get("/metrics", headers=operators_auth)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metrics_are_open_when_the_credential_is_empty(client, monkeypatch) -> None:
    monkeypatch.setenv("RRPD_FLOWER_BASIC_AUTH", "")
    reset_settings_cache()
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_the_outbox_backlog_is_a_gauge_per_lane(client, operators_auth, session, sent) -> None:
    from workers.core.db import transaction
    from workers.tasking.contract import PING
    from workers.tasking.enqueue import enqueue

    with transaction() as tx:  # nothing relays these while the test runs (``sent``)
        enqueue(tx, PING, payload="one")
        enqueue(tx, PING, payload="two")
    after = _samples(client.get("/metrics", headers=operators_auth).text)
    unpublished = {
        dict(labels)["lane"]: v
        for (n, labels), v in after.items()
        if n == "rrpd_outbox_unpublished"
    }
    assert unpublished == {"interactive": 2, "sync": 0, "schedule": 0, "events": 0}
    oldest = {
        dict(labels)["lane"]: v
        for (n, labels), v in after.items()
        if n == "rrpd_outbox_oldest_seconds"
    }
    assert oldest["interactive"] >= 0
    assert oldest["sync"] == 0


def test_counters_and_connection_gauges(client, operators_auth, session: Session) -> None:
    endpoint = f"/schedules/test-{uuid.uuid4().hex[:8]}"
    before = _samples(client.get("/metrics", headers=operators_auth).text)

    metrics.incr("rrpd_syncs_total", outcome="succeeded")
    metrics.incr("rrpd_syncs_total", outcome="failed")
    metrics.incr("rrpd_sync_duration_seconds_sum", 1.5)
    metrics.incr("rrpd_sync_duration_seconds_count")
    metrics.incr("rrpd_pagerduty_requests_total", 3, endpoint=endpoint)
    metrics.incr("rrpd_pagerduty_rate_limited_total", endpoint=endpoint)
    metrics.incr("rrpd_token_refreshes_total", outcome="needs_reauth")

    for status in ("connected", "connected", "needs_reauth", "invalid", "disconnected"):
        factories.api_key_connection(
            session, factories.workspace(session), status=ConnectionStatus(status)
        )
    failing = factories.api_key_connection(session, factories.workspace(session))
    failing.consecutive_sync_failures = 3
    # Past their deadline: one driven again (its next deadline an hour away, so no live
    # worker's deadlines loop touches it), one with a "sync now" late; one still in time.
    late = factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.DISCONNECTING
    )
    late.drive_at, late.drives = utcnow() + timedelta(hours=1), 2
    sync_late = factories.api_key_connection(session, factories.workspace(session))
    sync_late.sync_requested_at = utcnow()
    sync_late.drive_at, sync_late.drives = utcnow() + timedelta(hours=1), 1
    in_time = factories.api_key_connection(
        session, factories.workspace(session), status=ConnectionStatus.VALIDATING
    )
    in_time.expect_work(utcnow() + timedelta(hours=1))
    session.commit()

    text = client.get("/metrics", headers=operators_auth).text
    after = _samples(text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("rrpd_syncs_total", outcome="succeeded") == 1
    assert delta("rrpd_syncs_total", outcome="failed") == 1
    # A float counter in Redis (HINCRBYFLOAT): compare as floats, not bit for bit.
    assert delta("rrpd_sync_duration_seconds_sum") == pytest.approx(1.5)
    assert delta("rrpd_sync_duration_seconds_count") == 1
    assert after[("rrpd_pagerduty_requests_total", (("endpoint", endpoint),))] == 3
    assert after[("rrpd_pagerduty_rate_limited_total", (("endpoint", endpoint),))] == 1
    assert delta("rrpd_token_refreshes_total", outcome="needs_reauth") == 1

    connections = {
        dict(labels)["status"]: value
        for (name, labels), value in after.items()
        if name == "rrpd_connections"
    }
    # Every live status is present (zeros too); "disconnected" rows are history, not state.
    assert connections == {
        "validating": 1,
        "connected": 4,
        "needs_reauth": 1,
        "invalid": 1,
        "disconnecting": 1,
    }
    past = {
        dict(labels)["status"]: value
        for (name, labels), value in after.items()
        if name == "rrpd_connections_past_deadline"
    }
    assert past == {"validating": 0, "disconnecting": 1, "connected": 1}
    assert after[("rrpd_connections_failing_syncs", ())] == 1
    assert {dict(labels)["queue"] for (name, labels) in after if name == "rrpd_queue_length"} == {
        "interactive",
        "schedule",
        "sync",
    }
    assert after[("rrpd_metrics_source_up", (("source", "database"),))] == 1
    assert after[("rrpd_metrics_source_up", (("source", "redis"),))] == 1

    families = _families(text)
    assert families["rrpd_sync_duration_seconds"] == "summary"
    assert families["rrpd_syncs"] == "counter"
    assert families["rrpd_connections"] == "gauge"
    assert "# HELP rrpd_connections Live PagerDuty connections, by status." in text


def test_a_source_that_does_not_answer_is_reported_not_fatal(
    client, operators_auth, monkeypatch
) -> None:
    def down() -> dict[str, float]:
        raise redis.ConnectionError("no route")

    monkeypatch.setattr(metrics, "snapshot", down)
    r = client.get("/metrics", headers=operators_auth)
    assert r.status_code == 200
    samples = _samples(r.text)
    assert samples[("rrpd_metrics_source_up", (("source", "redis"),))] == 0
    assert samples[("rrpd_metrics_source_up", (("source", "database"),))] == 1
    assert ("rrpd_connections", (("status", "connected"),)) in samples


def test_queue_lengths_count_every_priority_list(redis_client) -> None:
    name = f"q-{uuid.uuid4().hex[:6]}"
    base = redis_key(name)
    try:
        redis_client.rpush(base, "a", "b")
        redis_client.rpush(f"{base}\x06\x163", "c")
        assert metrics.queue_lengths([name, "empty-" + name]) == {name: 3, "empty-" + name: 0}
    finally:
        redis_client.delete(base, f"{base}\x06\x163")


def test_label_values_are_escaped() -> None:
    key = metrics.gauge("rrpd_queue_length", queue='we"ird\\name\n')
    text = metrics.render({key: 2}, values={}, gauge_help=metrics_api.GAUGE_HELP)
    (sample,) = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "rrpd_queue_length"
    ]
    assert sample.labels == {"queue": 'we"ird\\name\n'}
    assert sample.value == 2


def test_openapi_documents_the_401_and_its_body(client, operators_auth) -> None:
    from api_stub.errors import ErrorResponse

    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/metrics"]["get"]
    unauthorized = op["responses"]["401"]
    assert "RRPD_FLOWER_BASIC_AUTH" in unauthorized["description"]
    schema = unauthorized["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "www-authenticate" in {h.lower() for h in unauthorized.get("headers", {})}
    assert op["security"] == [{"operators": []}]
    assert doc["components"]["securitySchemes"]["operators"] == {"type": "http", "scheme": "basic"}
    # The documented body is the one a scraper without the credential gets.
    ErrorResponse.model_validate(client.get("/metrics").json())

"""``/readyz`` refuses traffic when the configuration cannot work, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api_stub.app import create_app
from workers.core.settings import reset_settings_cache


@pytest.fixture
def reconfigure(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


def test_ready_when_configuration_database_and_broker_answer(db) -> None:
    with TestClient(create_app()) as client:
        r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ok",
        "checks": {"configuration": "ok", "database": "ok", "broker": "ok"},
    }


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"RRPD_ENCRYPTION_KEYS": "k1=notafernetkey"},
            "invalid: RRPD_ENCRYPTION_KEYS: key 'k1' is not a valid Fernet key",
        ),
        (
            {"RRPD_ENV": "production", "RRPD_API_JWT_SECRET": "abcdef"},
            "invalid: RRPD_API_JWT_SECRET is 6 characters; production needs at least 32",
        ),
    ],
    ids=["malformed-key", "short-jwt-secret"],
)
def test_a_configuration_that_cannot_work_is_not_ready(db, reconfigure, env, words) -> None:
    for name, value in env.items():
        reconfigure.setenv(name, value)
    reset_settings_cache()
    with TestClient(create_app()) as client:
        r = client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["configuration"].startswith(words), body
    assert "notafernetkey" not in r.text
    assert "abcdef" not in r.text


def test_production_serves_the_openapi_document_but_not_swagger_ui(db, reconfigure) -> None:
    with TestClient(create_app()) as client:
        assert client.get("/docs").status_code == 200  # local: the interactive console
    reconfigure.setenv("RRPD_ENV", "production")
    reset_settings_cache()
    with TestClient(create_app()) as client:
        for path in (
            "/docs",
            "/redoc",
            "/docs/oauth2-redirect",
            "/docs/static/swagger-ui-bundle.js",
        ):
            r = client.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found"
        doc = client.get("/openapi.json")
        assert doc.status_code == 200
        assert "/v1/workspaces/{workspace_id}/pagerduty" in doc.json()["paths"]

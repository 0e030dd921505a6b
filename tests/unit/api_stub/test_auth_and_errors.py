"""Authentication, authorization and the one error shape."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from api_stub.auth import issue_token
from models import AuditEvent, PagerDutyConnection, TaskRecord

GOOD_KEY = "u+abcdefghijklmnopqrst"


def _no_writes(session) -> None:
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TaskRecord)) == 0
    assert session.scalar(select(func.count()).select_from(PagerDutyConnection)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


def status_url(world) -> str:
    return f"/v1/workspaces/{world.ws.id}/pagerduty"


def key_url(world) -> str:
    return f"/v1/workspaces/{world.ws.id}/pagerduty/api-key"


def test_no_token_is_401(client, world) -> None:
    r = client.get(status_url(world))
    _assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer ", "Token token=abc"],
    ids=["garbage", "basic", "empty", "pagerduty-style"],
)
def test_bad_token_is_401(client, world, header) -> None:
    _assert_error(
        client.get(status_url(world), headers={"Authorization": header}), 401, "invalid_token"
    )


def test_token_signed_with_another_secret_is_401(client, world) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    claims = {
        "sub": str(world.admin.id),
        "workspace_id": str(world.ws.id),
        "role": "admin",
        "exp": int(time.time()) + 600,
    }
    forged = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("x" * 48))
    r = client.get(status_url(world), headers={"Authorization": f"Bearer {forged}"})
    _assert_error(r, 401, "invalid_token")


def test_alg_none_is_401(client, world) -> None:
    import base64
    import json

    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {
        "sub": str(world.admin.id),
        "workspace_id": str(world.ws.id),
        "role": "admin",
        "exp": int(time.time()) + 600,
    }
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    _assert_error(
        client.get(status_url(world), headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )


def test_expired_token_is_401(client, world) -> None:
    token = issue_token(
        world.ws.id, world.admin.id, "admin", ttl_seconds=60, now=time.time() - 3600
    )
    r = client.get(status_url(world), headers={"Authorization": f"Bearer {token}"})
    _assert_error(r, 401, "token_expired")


def test_token_without_exp_is_401(client, world) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from workers.core.settings import get_settings

    claims = {"sub": str(world.admin.id), "workspace_id": str(world.ws.id), "role": "admin"}
    token = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(get_settings().jwt_secret()))
    _assert_error(
        client.get(status_url(world), headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )


def test_token_with_unknown_role_is_401(client, world) -> None:
    token = issue_token(world.ws.id, world.admin.id, "superuser")
    _assert_error(
        client.get(status_url(world), headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )


def test_member_not_in_the_workspace_is_401(client, world) -> None:
    # A validly signed token naming a member of another workspace (or nobody).
    for sub in (world.other_admin.id, uuid.uuid4()):
        token = issue_token(world.ws.id, sub, "admin")
        r = client.get(status_url(world), headers={"Authorization": f"Bearer {token}"})
        _assert_error(r, 401, "unknown_member")


def test_token_for_another_workspace_is_403_for_reads_and_writes(client, world, session) -> None:
    h = world.headers(world.other_admin)
    _assert_error(client.get(status_url(world), headers=h), 403, "workspace_forbidden")
    _assert_error(
        client.put(key_url(world), json={"api_key": GOOD_KEY}, headers=h),
        403,
        "workspace_forbidden",
    )
    _assert_error(client.delete(status_url(world), headers=h), 403, "workspace_forbidden")
    _assert_error(
        client.get(f"/v1/workspaces/{world.ws.id}/rotations", headers=h), 403, "workspace_forbidden"
    )
    _no_writes(session)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/pagerduty/api-key", {"api_key": GOOD_KEY}),
        ("POST", "/pagerduty/oauth", {"client_id": "abc", "client_secret": "def"}),
        ("DELETE", "/pagerduty", None),
        ("POST", "/pagerduty/sync", None),
    ],
    ids=["api-key", "oauth", "disconnect", "sync"],
)
def test_plain_member_cannot_manage(client, world, session, method, suffix, body) -> None:
    r = client.request(
        method,
        f"/v1/workspaces/{world.ws.id}{suffix}",
        json=body,
        headers=world.headers(world.member),
    )
    _assert_error(r, 403, "role_forbidden")
    _no_writes(session)


def test_lower_of_token_and_stored_role_wins(client, world, session) -> None:
    # The token says admin, the database says member: refused.
    r = client.put(
        key_url(world),
        json={"api_key": GOOD_KEY},
        headers=world.headers(world.member, role="admin"),
    )
    _assert_error(r, 403, "role_forbidden")
    # The database says admin, the token says member: refused too (a token never grants more).
    r = client.put(
        key_url(world),
        json={"api_key": GOOD_KEY},
        headers=world.headers(world.admin, role="member"),
    )
    _assert_error(r, 403, "role_forbidden")
    _no_writes(session)
    # A demotion in the database takes effect at once, even for an admin token.
    world.admin.role = "member"
    session.merge(world.admin)
    session.commit()
    r = client.put(key_url(world), json={"api_key": GOOD_KEY}, headers=world.headers(world.admin))
    _assert_error(r, 403, "role_forbidden")


def test_unauthenticated_bad_body_still_gets_401_not_422(client, world, session) -> None:
    r = client.put(
        key_url(world), content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _assert_error(r, 401, "unauthenticated")
    _no_writes(session)


# --- body checks: nothing is written or enqueued ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"api_key": "short"}, "api_key"),
        ({"api_key": "u+abc def ghi jkl mno pqr"}, "api_key"),
        ({"api_key": "x" * 129}, "api_key"),
        ({"api_key": "u+abcdefghij\x00klmnopqrst"}, "api_key"),
        ({"api_key": GOOD_KEY, "region": "mars"}, "region"),
        ({"region": "us"}, "api_key"),
        ({"api_key": 12345678901234567890}, "api_key"),
        ({"api_key": GOOD_KEY, "apikey": "typo"}, "apikey"),
    ],
    ids=["short", "spaces", "long", "control-char", "region", "missing", "number", "unknown"],
)
def test_bad_api_key_bodies_are_422_and_enqueue_nothing(
    client, world, session, sent, body, field
) -> None:
    r = client.put(key_url(world), json=body, headers=world.headers(world.admin))
    err = _assert_error(r, 422, "invalid_request")
    assert field in [d["field"] for d in err["details"]]
    # The submitted key is never echoed back.
    if isinstance(body.get("api_key"), str) and len(body["api_key"]) > 8:
        assert body["api_key"] not in r.text
    assert sent.calls == []
    _no_writes(session)


def test_invalid_json_is_422(client, world, session, sent) -> None:
    r = client.put(
        key_url(world),
        content=b'{"api_key": ',
        headers={**world.headers(world.admin), "Content-Type": "application/json"},
    )
    _assert_error(r, 422, "invalid_json")
    r = client.put(key_url(world), json=["not", "an", "object"], headers=world.headers(world.admin))
    _assert_error(r, 422, "invalid_request")
    assert sent.calls == []
    _no_writes(session)


def test_wrong_content_type_is_415(client, world, session, sent) -> None:
    r = client.put(
        key_url(world),
        content=f"api_key={GOOD_KEY}",
        headers={**world.headers(world.admin), "Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_error(r, 415, "unsupported_media_type")
    r = client.put(
        key_url(world),
        content=b'{"api_key": "' + GOOD_KEY.encode() + b'"}',
        headers={**world.headers(world.admin), "Content-Type": "text/plain"},
    )
    _assert_error(r, 415, "unsupported_media_type")
    assert sent.calls == []
    _no_writes(session)


def test_json_with_charset_is_accepted(client, world) -> None:
    r = client.put(
        key_url(world),
        content=b'{"api_key": "' + GOOD_KEY.encode() + b'"}',
        headers={**world.headers(world.admin), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 202, r.text


def test_huge_body_is_413_by_content_length(client, world, session, sent) -> None:
    from workers.core.settings import get_settings

    big = {"api_key": GOOD_KEY, "region": "us", "pad": "x" * (get_settings().api_max_body_bytes)}
    r = client.put(key_url(world), json=big, headers=world.headers(world.admin))
    _assert_error(r, 413, "payload_too_large")
    assert sent.calls == []
    _no_writes(session)


def test_huge_streamed_body_without_length_is_413(client, world, session, sent) -> None:
    from workers.core.settings import get_settings

    limit = get_settings().api_max_body_bytes

    def chunks():
        yield b'{"api_key": "' + GOOD_KEY.encode() + b'", "pad": "'
        for _ in range(limit // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    r = client.put(
        key_url(world),
        content=chunks(),
        headers={**world.headers(world.admin), "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _assert_error(r, 413, "payload_too_large")
    assert sent.calls == []
    _no_writes(session)


# --- framework errors in the same shape ---------------------------------------------------------


def test_unknown_route_is_404_json(client) -> None:
    _assert_error(client.get("/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_json(client, world) -> None:
    r = client.patch(status_url(world), headers=world.headers(world.admin))
    _assert_error(r, 405, "method_not_allowed")


def test_bad_path_and_query_params_are_422_json(client, world) -> None:
    h = world.headers(world.admin)
    r = client.get(f"/v1/workspaces/{world.ws.id}/pagerduty/schedules?limit=0", headers=h)
    err = _assert_error(r, 422, "invalid_request")
    assert err["details"][0]["field"] == "limit"
    r = client.get("/v1/workspaces/not-a-uuid/pagerduty", headers=h)
    _assert_error(r, 422, "invalid_request")


def test_openapi_describes_every_endpoint(client) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    expected = {
        ("/v1/workspaces/{workspace_id}/pagerduty/api-key", "put"),
        ("/v1/workspaces/{workspace_id}/pagerduty/oauth", "post"),
        ("/v1/pagerduty/oauth/callback", "get"),
        ("/v1/workspaces/{workspace_id}/pagerduty", "get"),
        ("/v1/workspaces/{workspace_id}/pagerduty", "delete"),
        ("/v1/workspaces/{workspace_id}/pagerduty/sync", "post"),
        ("/v1/workspaces/{workspace_id}/pagerduty/schedules", "get"),
        ("/v1/workspaces/{workspace_id}/rotations", "get"),
        ("/v1/workspaces/{workspace_id}/rotations/{rotation_id}/pagerduty-schedule", "put"),
        ("/v1/workspaces/{workspace_id}/rotations/{rotation_id}/pagerduty-schedule", "delete"),
        ("/v1/workspaces/{workspace_id}/audit", "get"),
        ("/v1/tasks/{task_id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    }
    for path, method in expected:
        op = paths[path][method]
        assert op["summary"], (path, method)
    put_key = paths["/v1/workspaces/{workspace_id}/pagerduty/api-key"]["put"]
    ref = put_key["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ApiKeyRequest")
    assert "ApiKeyRequest" in doc["components"]["schemas"]
    for status in ("401", "403", "409", "413", "415", "422"):
        assert status in put_key["responses"], status
    assert put_key["security"] == [{"bearer": []}]
    assert "security" not in paths["/v1/pagerduty/oauth/callback"]["get"]


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000, b'{"api_key": ' + b"[" * 3000 + b"]" * 3000 + b"}"],
    ids=["unclosed", "deep-but-valid"],
)
def test_deeply_nested_json_is_422_not_500(client, world, session, sent, raw) -> None:
    r = client.put(
        key_url(world),
        content=raw,
        headers={**world.headers(world.admin), "Content-Type": "application/json"},
    )
    err = _assert_error(r, 422, "invalid_json")
    assert "nested" in err["message"]
    assert sent.calls == []
    _no_writes(session)


def _signed(claims: dict) -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from workers.core.settings import get_settings

    key = OctKey.import_key(get_settings().jwt_secret())
    return jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])


@pytest.mark.parametrize(
    ("claim", "value"),
    [("role", ["admin"]), ("role", {"admin": True}), ("sub", [1]), ("workspace_id", 7)],
    ids=["role-list", "role-object", "sub-list", "workspace-number"],
)
def test_correctly_signed_token_with_a_non_string_claim_is_401(client, world, claim, value) -> None:
    claims = {
        "sub": str(world.admin.id),
        "workspace_id": str(world.ws.id),
        "role": "admin",
        "exp": int(time.time()) + 600,
        claim: value,
    }
    token = _signed(claims)
    r = client.get(status_url(world), headers={"Authorization": f"Bearer {token}"})
    err = _assert_error(r, 401, "invalid_token")
    assert claim in err["message"]
    # The panel answers the same way, and a cookie holding such a token is no session.
    r = client.get(f"/panel?token={token}")
    err = _assert_error(r, 401, "invalid_token")
    assert claim in err["message"]
    from api_stub.panel import session as panel

    client.cookies.set(panel.IDENTITY_COOKIE, token)
    page = client.get("/panel")
    assert page.status_code == 200
    assert "Who are you?" in page.text


def test_openapi_explains_the_region_choice(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("ApiKeyRequest", "OAuthStartRequest"):
        region = schemas[model]["properties"]["region"]
        assert region["default"] == "us"
        assert ".eu.pagerduty.com" in region["description"], model

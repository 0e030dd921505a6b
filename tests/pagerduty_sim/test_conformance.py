"""Every kind of response the simulator gives, validated against PagerDuty's own OpenAPI schema.

Request URLs are mapped onto the schema's server (https://api.pagerduty.com; `/eu` is stripped).
Where the facts file contradicts the schema (e.g. `/users/me`'s 400 string body, a 402 on routes
whose schema lists no 402) the response is checked against the named shared error schema instead,
and the set of such off-schema (route, status) pairs must equal the documented list below, so any
new divergence fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from pagerduty_sim.server import SimulatorHandle

from .conftest import ALICE_KEY, EU_KEY, NOAPI_KEY, PD_ACCEPT, TokenFactory, api, load

SCHEMA_PATH = Path("/work/shared/reference/pagerduty-rest-subset.openapi.json")
SERVER = "https://api.pagerduty.com"

# Facts override the schema here (see docs/simulator.md, "Where facts and schema disagree").
EXPECTED_OFF_SCHEMA = {
    ("/users/me", 401),  # schema lists no 401 for /users/me; a bad token is still 401
    ("/users/me", 402),
    ("/users", 402),  # schema lists 402 only for /abilities/{id}; facts: no API plan -> 402
    ("/users/{id}", 402),
    ("/schedules", 402),
    ("/schedules/{id}", 402),
    ("/schedules/{id}/users", 402),
    ("/oncalls", 402),
    ("/abilities", 402),
    ("/v3/schedules", 402),
    ("/v3/schedules/{id}", 402),
    ("/v3/schedules", 429),  # v3 operations list no 429; the rate limit still applies
    ("/v3/schedules/{id}", 429),
    ("/v3/schedules/{id}", 400),  # facts: v3 endpoint on a non-upgraded schedule -> 400
    ("/users/me", 400),  # facts: account-level key -> 400 whose `error` is a plain string
}
ERROR_COMPONENT = {
    400: "ArgumentError",
    401: "Unauthorized",
    402: "PaymentRequired",
    403: "Forbidden",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
}

ENDPOINTS = {  # schema template -> a concrete path on the demo account
    "/users": "/users",
    "/users/{id}": "/users/PUBOB01",
    "/users/me": "/users/me",
    "/schedules": "/schedules",
    "/schedules/{id}": "/schedules/PSPRIMA",
    "/schedules/{id}/users": "/schedules/PSPRIMA/users",
    "/oncalls": "/oncalls",
    "/abilities": "/abilities",
    "/v3/schedules": "/v3/schedules",
    "/v3/schedules/{id}": "/v3/schedules/PSFTSUN",
}


@pytest.fixture(scope="module")
def spec() -> tuple[OpenAPI, dict[str, Any]]:
    raw = json.loads(SCHEMA_PATH.read_text())
    return OpenAPI.from_dict(raw), raw


def template_of(path: str) -> str:
    for template, concrete in ENDPOINTS.items():
        if concrete == path:
            return template
    for template in sorted(ENDPOINTS, key=len, reverse=True):
        parts, tparts = path.strip("/").split("/"), template.strip("/").split("/")
        if len(parts) == len(tparts) and all(
            t.startswith("{") or t == p for p, t in zip(parts, tparts, strict=True)
        ):
            if template == "/users/{id}" and path == "/users/me":
                continue
            return template
    raise AssertionError(f"no schema template for {path}")


class Checker:
    def __init__(self, spec: tuple[OpenAPI, dict[str, Any]]) -> None:
        self.openapi, self.raw = spec
        self.off_schema: set[tuple[str, int]] = set()
        self.checked: set[tuple[str, int]] = set()

    def component_validate(self, name: str, body: Any) -> None:
        schema = self.raw["components"]["responses"][name]["content"]["application/json"]["schema"]
        wrapper = (
            {**self.raw, "$ref": schema["$ref"]} if "$ref" in schema else {**self.raw, **schema}
        )
        OAS30Validator(wrapper).validate(body)

    def check(self, resp: httpx.Response) -> None:
        url = urlsplit(str(resp.request.url))
        path = url.path.removeprefix("/eu") if url.path.startswith("/eu/") else url.path
        template = template_of(path)
        status = resp.status_code
        self.checked.add((template, status))
        documented = self.raw["paths"][template]["get"]["responses"]
        request = MockRequest(
            SERVER,
            "get",
            path,
            args=dict(parse_qsl(url.query)),
            headers={"Accept": PD_ACCEPT, "Content-Type": "application/json"},
        )
        response = MockResponse(
            resp.content,
            status_code=status,
            headers=dict(resp.headers),
            content_type=resp.headers["content-type"],
        )
        if template == "/users/me" and status == 400:
            # facts: `error` is a plain string; the schema's ArgumentError wants an object, and
            # the validator must say so (proves the validator really looks at bodies)
            assert isinstance(resp.json()["error"], str)
            with pytest.raises(OpenAPIError):
                self.openapi.validate_response(request, response)
            self.off_schema.add((template, status))
            return
        if str(status) not in documented:
            self.off_schema.add((template, status))
            self.component_validate(ERROR_COMPONENT[status], resp.json())
            return
        self.openapi.validate_response(request, response)


def test_every_response_conforms(
    sim: SimulatorHandle, oauth_tokens: TokenFactory, spec: tuple[OpenAPI, dict[str, Any]]
) -> None:
    chk = Checker(spec)
    # 401 bodies are not JSON by default (go-pagerduty#553); validate the JSON mode's bodies
    sim.control.post("/settings", json={"auth_error_mode": "json"}).raise_for_status()
    # an override inside the window so overrides_subschedule is not empty
    sim.control.post(
        "/accounts/acme/schedules/PSPRIMA/overrides",
        json={"user_id": "PUDAVE1", "start": "2024-01-02T00:00:00Z", "end": "2024-01-03T00:00:00Z"},
    )
    win = {"since": "2024-01-01T00:00:00Z", "until": "2024-01-09T00:00:00Z"}
    every = "&".join(
        f"include[]={i}" for i in ("final_schedule", "schedule_layers", "overrides_subschedule")
    )
    with api(sim) as c:
        for path in (
            "/users",
            "/users?limit=2&offset=1&total=true",
            "/users?query=ca&include[]=teams",
            "/users/PUBOB01",
            "/schedules",
            f"/schedules?{every}",
            "/schedules/PSPRIMA",
            "/schedules/PSPRIMA?overflow=true&time_zone=Asia/Tokyo",
            "/schedules/PSSECON",
            "/schedules/PSPRIMA/users",
            "/oncalls",
            "/oncalls?include[]=users&earliest=true&time_zone=Europe/Paris",
            "/oncalls?user_ids[]=PUERIN1&escalation_policy_ids[]=PEPOPS1",
            "/abilities",
            "/v3/schedules",
            "/v3/schedules?total=true&limit=1",
            "/v3/schedules/PSFTSUN",
            "/v3/schedules/PSFTSUN?include[]=final_schedule",
            # errors
            "/users?offset=10000",
            "/users?limit=x",
            "/schedules/PSPRIMA?since=yesterday",
            "/oncalls?since=2024-01-01T00:00:00Z&until=2024-06-01T00:00:00Z",
            "/schedules/PSPRIMA/users?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            "/users/PNOPE00",
            "/schedules/PNOPE00",
            "/schedules/PNOPE00/users",
            "/schedules/PSFTSUN",
            "/v3/schedules/PNOPE00",
            "/v3/schedules/PSPRIMA",
            "/v3/schedules?limit=0",
            "/users/me",
        ):
            chk.check(
                c.get(path, params=win if "since" not in path and "schedules/" in path else None)
            )
    with api(sim, key=ALICE_KEY) as c:
        chk.check(c.get("/users/me"))
    with api(sim, key=EU_KEY, eu=True) as c:
        chk.check(c.get("/users"))
        chk.check(c.get("/schedules/PSEUDAY"))
    openid_only = oauth_tokens(scope="openid users.read users.write")["access_token"]
    for template, path in ENDPOINTS.items():
        with api(sim, key="u+not-a-key") as c:
            chk.check(c.get(path))
        with api(sim, key=NOAPI_KEY) as c:
            chk.check(c.get(path))
        if template != "/users/me":
            with api(sim, bearer=openid_only) as c:
                chk.check(c.get(path))
    sim.control.post("/rate_limit", json={"per_minute": 1}).raise_for_status()
    for path in ENDPOINTS.values():
        sim.control.post("/rate_limit/reset").raise_for_status()
        with api(sim) as c:
            c.get(path)
            limited = c.get(path)
            assert limited.status_code == 429
            chk.check(limited)

    assert chk.off_schema == EXPECTED_OFF_SCHEMA
    # every documented status we can produce was produced and validated
    for template in ENDPOINTS:
        for status in (200, 401, 429) if template != "/users/me" else (200, 400, 429):
            if (template, status) in EXPECTED_OFF_SCHEMA:
                continue
            assert (template, status) in chk.checked, (template, status)
    for template in ENDPOINTS:
        if template != "/users/me":
            assert (template, 403) in chk.checked, template
    for pair in [
        ("/users", 400),
        ("/users/{id}", 404),
        ("/schedules/{id}", 404),
        ("/schedules/{id}", 400),
        ("/schedules/{id}/users", 404),
        ("/schedules/{id}/users", 400),
        ("/oncalls", 400),
        ("/v3/schedules/{id}", 404),
        ("/v3/schedules", 400),
    ]:
        assert pair in chk.checked, pair


def test_layers_with_restrictions_conform(
    sim: SimulatorHandle, spec: tuple[OpenAPI, dict[str, Any]]
) -> None:
    from .test_schedules import LAYERED

    load(sim, LAYERED)
    chk = Checker(spec)
    with api(sim) as c:
        resp = c.get(
            "/schedules/PSLAY",
            params={"since": "2024-01-02T00:00:00Z", "until": "2024-01-04T00:00:00Z"},
        )
        assert resp.json()["schedule"]["schedule_layers"][0]["restrictions"][0]["type"] == (
            "daily_restriction"
        )
        chk.check(resp)
        chk.check(c.get("/schedules", params={"include[]": "schedule_layers"}))
    assert chk.off_schema == set()

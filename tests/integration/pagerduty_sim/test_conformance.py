"""Every kind of response the simulator gives, validated against PagerDuty's own OpenAPI schema.

Request URLs are mapped onto the schema's server (https://api.pagerduty.com; `/eu` is stripped).
Where the facts file contradicts the schema the simulator follows the facts, and this test pins
down exactly where:

- status-level: (route, status) pairs the schema does not list (e.g. `/users/me`'s 400 string
  body, a 402 on routes whose schema lists no 402) are checked against the named shared error
  schema instead, and the set of them must equal EXPECTED_OFF_SCHEMA;
- field-level: bodies that break the schema in a documented way (null schedule/start/end on a
  permanent on-call, ...) must fail raw validation, pass once that one deviation is undone, and
  the set of deviations seen must equal DEVIATIONS;
- 401 bodies are not JSON by default (go-pagerduty#553): recorded per route in NON_JSON_401, and
  the JSON mode's 401 bodies are validated like any other.

Any new divergence therefore fails this test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
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
from tests.support.simulator import ALICE_KEY, EU_KEY, NOAPI_KEY, PD_ACCEPT, TokenFactory, api, load

SCHEMA_PATH = Path("/work/shared/reference/pagerduty-rest-subset.openapi.json")
SERVER = "https://api.pagerduty.com"

# Facts override the schema here (see docs/simulator.md, "Fidelity").
EXPECTED_OFF_SCHEMA = {
    ("/users/me", 401),  # schema lists no 401 for /users/me; a bad token is still 401
    ("/users/me", 402),
    ("/users", 402),  # schema lists 402 only for /abilities/{id}; facts: no API plan -> 402,
    ("/users/{id}", 402),  # and per-ability 402s (team_ids[] needs `teams`)
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


def _drop_null(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def fix(obj: dict[str, Any]) -> None:
        for k in keys:
            if k in obj and obj[k] is None:
                del obj[k]

    return fix


def _walk_oncalls(fix: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
    def run(body: Any) -> None:
        for o in body.get("oncalls", []):
            fix(o)

    return run


def _as_reference(o: dict[str, Any]) -> None:
    u = o.get("user") or {}
    if u.get("type") == "user":
        o["user"] = {k: u[k] for k in ("id", "summary", "self", "html_url")}
        o["user"]["type"] = "user_reference"


def _coverage(body: Any) -> None:
    scheds = body.get("schedules") or [body.get("schedule") or {}]
    fix = _drop_null(("rendered_coverage_percentage",))
    for sch in scheds:
        for layer in sch.get("schedule_layers", []):
            fix(layer)
        for sub in ("final_schedule", "overrides_subschedule"):
            if isinstance(sch.get(sub), dict):
                fix(sch[sub])


@dataclass(frozen=True)
class Deviation:
    name: str
    templates: tuple[str, ...]
    undo: Callable[[Any], None]
    source: str


# Field-level departures from the schema that the facts justify (docs/simulator.md).
DEVIATIONS = {
    d.name: d
    for d in (
        Deviation(
            "oncalls: permanent on-call has schedule/start/end null",
            ("/oncalls",),
            _walk_oncalls(_drop_null(("schedule", "start", "end"))),
            "facts file (/oncalls); schema types them as non-nullable",
        ),
        Deviation(
            "oncalls: include[]=users embeds full user objects",
            ("/oncalls",),
            _walk_oncalls(_as_reference),
            "PagerDuty include[] semantics; schema types `user` as a user_reference",
        ),
        Deviation(
            "schedules: rendered_coverage_percentage is null without a window",
            ("/schedules", "/schedules/{id}"),
            _coverage,
            "thegreenrobot/pagerduty_dashing#19; schema text says null, type says number",
        ),
    )
}
NON_JSON_401 = {
    "/users",
    "/users/{id}",
    "/users/me",
    "/schedules",
    "/schedules/{id}",
    "/schedules/{id}/users",
    "/oncalls",
    "/abilities",
    "/v3/schedules",
    "/v3/schedules/{id}",
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
        self.deviations: set[str] = set()
        self.non_json_401: set[str] = set()

    def component_validate(self, name: str, body: Any) -> None:
        schema = self.raw["components"]["responses"][name]["content"]["application/json"]["schema"]
        wrapper = (
            {**self.raw, "$ref": schema["$ref"]} if "$ref" in schema else {**self.raw, **schema}
        )
        OAS30Validator(wrapper).validate(body)

    def _validate(self, path: str, query: str, status: int, headers: Any, body: bytes) -> None:
        request = MockRequest(
            SERVER,
            "get",
            path,
            args=dict(parse_qsl(query)),
            headers={"Accept": PD_ACCEPT, "Content-Type": "application/json"},
        )
        response = MockResponse(
            body, status_code=status, headers=dict(headers), content_type=headers["content-type"]
        )
        self.openapi.validate_response(request, response)

    def check(self, resp: httpx.Response) -> None:
        url = urlsplit(str(resp.request.url))
        path = url.path.removeprefix("/eu") if url.path.startswith("/eu/") else url.path
        template = template_of(path)
        status = resp.status_code
        self.checked.add((template, status))
        documented = self.raw["paths"][template]["get"]["responses"]
        ctype = resp.headers.get("content-type", "")
        if status == 401 and not ctype.startswith("application/json"):
            # go-pagerduty#553: PagerDuty's 401 bodies are often not JSON at all
            with pytest.raises(json.JSONDecodeError):
                resp.json()
            self.non_json_401.add(template)
            return
        if template == "/users/me" and status == 400:
            # facts: `error` is a plain string; the schema's ArgumentError wants an object, and
            # the validator must say so (proves the validator really looks at bodies)
            assert isinstance(resp.json()["error"], str)
            with pytest.raises(OpenAPIError):
                self._validate(path, url.query, status, resp.headers, resp.content)
            self.off_schema.add((template, status))
            return
        if str(status) not in documented:
            self.off_schema.add((template, status))
            self.component_validate(ERROR_COMPONENT[status], resp.json())
            return
        try:
            self._validate(path, url.query, status, resp.headers, resp.content)
            return
        except OpenAPIError:
            pass
        # off-schema body: it must be exactly one or more listed deviations
        body = resp.json()
        used = []
        for dev in DEVIATIONS.values():
            if template not in dev.templates:
                continue
            fixed = copy.deepcopy(body)
            dev.undo(fixed)
            if fixed != body:
                used.append(dev.name)
                body = fixed
        assert used, f"{template} {status} breaks the schema with no listed deviation"
        self._validate(path, url.query, status, resp.headers, json.dumps(body).encode())
        self.deviations.update(used)


def test_every_response_conforms(
    sim: SimulatorHandle, oauth_tokens: TokenFactory, spec: tuple[OpenAPI, dict[str, Any]]
) -> None:
    chk = Checker(spec)
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
            "/oncalls?since=2024-01-01T13:00:00Z&until=2024-01-01T13:00:00Z",
            "/abilities",
            "/v3/schedules",
            "/v3/schedules?total=true&limit=1",
            "/v3/schedules/PSFTSUN",
            "/v3/schedules/PSFTSUN?include[]=final_schedule",
            "/v3/schedules/PSFTSUN?include[]=users",
            (
                "/schedules?include[]=schedule_layers&since=2024-01-01T00:00:00Z"
                "&until=2024-01-09T00:00:00Z&time_zone=UTC"
            ),
            "/schedules/PSPRIMA?since=2024-01-03T10:00:00.0001Z&until=2024-01-03T10:00:00.0002Z",
            "/schedules/PSPRIMA?since=2024-01-03T10:00:00Z&until=2024-01-03T10:00:00Z",
            # errors
            "/users?offset=10000",
            "/oncalls?offset=9990&limit=100",
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
    with api(sim) as c:
        # no since/until: no entries, null coverage (a listed deviation)
        chk.check(c.get("/schedules/PSPRIMA"))
        chk.check(c.get("/schedules", params={"include[]": "schedule_layers"}))
        chk.check(c.get("/schedules/PSPRIMA/users"))
        # v3: custom shift and overrides of a rotation and of the custom shift (all four sources)
        shift = sim.control.post(
            "/accounts/acme/schedules/PSFTSUN/custom_shifts",
            json={"user_id": "PUBOB01", "start": "2024-01-01T13:00:00Z", "duration_seconds": 3600},
        ).json()
        for target in ({"rotation_id": "PRFTS01"}, {"custom_shift_id": shift["id"]}):
            sim.control.post(
                "/accounts/acme/schedules/PSFTSUN/overrides",
                json={**target, "user_id": "PUDAVE1", "start": "2024-01-01T13:30:00Z"},
            ).raise_for_status()
        v3 = c.get(
            "/v3/schedules/PSFTSUN",
            params={"include[]": ["final_schedule", "users"], **win, "time_zone": "UTC"},
        )
        fs = v3.json()["schedule"]["final_schedule"]
        assert {a["source"]["type"] for a in fs["computed_shift_assignments"]} == {
            "schedule_rotation",
            "custom_shift",
            "schedule_rotation_override",
            "custom_shift_override",
        }
        chk.check(v3)
        # deleted users stay on schedules and /oncalls as placeholders with deleted_at
        sim.control.delete("/accounts/acme/users/PUCAROL").raise_for_status()
        week3 = {"since": "2024-01-15T00:00:00Z", "until": "2024-01-22T00:00:00Z"}
        chk.check(c.get("/schedules/PSPRIMA", params=week3))
        layers_week3 = {"include[]": "schedule_layers", **week3, "time_zone": "UTC"}
        chk.check(c.get("/schedules", params=layers_week3))
        placeholder = c.get("/oncalls", params={"since": week3["since"], "until": week3["since"]})
        assert any("deleted_at" in o["user"] for o in placeholder.json()["oncalls"])
        chk.check(placeholder)
        # 402: a parameter gated behind an ability the account lacks
        sim.control.patch("/accounts/acme", json={"abilities": []}).raise_for_status()
        gated = c.get("/users", params={"team_ids[]": "PTENG01"})
        assert gated.status_code == 402
        assert gated.json()["error"]["code"] == 2014
        chk.check(gated)
        sim.control.patch(
            "/accounts/acme", json={"abilities": ["teams"], "required_abilities": {}}
        ).raise_for_status()
    with api(sim, key=ALICE_KEY) as c:
        chk.check(c.get("/users/me"))
    with api(sim, key=EU_KEY, eu=True) as c:
        chk.check(c.get("/users"))
        chk.check(c.get("/schedules/PSEUDAY"))
    openid_only = oauth_tokens(scope="openid users.read users.write")["access_token"]
    for path in ENDPOINTS.values():  # default: 401 bodies that are not JSON
        with api(sim, key="u+not-a-key") as c:
            chk.check(c.get(path))
    sim.control.post("/settings", json={"auth_error_mode": "json"}).raise_for_status()
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
    assert chk.deviations == set(DEVIATIONS)
    assert chk.non_json_401 == NON_JSON_401
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
    from tests.support.simulator import LAYERED

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
        chk.check(
            c.get(
                "/schedules",
                params={
                    "include[]": "schedule_layers",
                    "since": "2024-01-02T00:00:00Z",
                    "until": "2024-01-04T00:00:00Z",
                    "time_zone": "UTC",
                },
            )
        )
    assert chk.off_schema == set()
    assert chk.deviations == set()


def test_each_listed_deviation_really_breaks_the_schema(
    sim: SimulatorHandle, spec: tuple[OpenAPI, dict[str, Any]]
) -> None:
    """Undo nothing: the raw bodies must fail the schema (the deviations are not decorative)."""
    chk = Checker(spec)
    with api(sim) as c:
        for path, params in (
            ("/oncalls", {"since": "2024-01-01T13:00:00Z", "until": "2024-01-01T13:00:00Z"}),
            ("/oncalls", {"include[]": "users"}),
            ("/schedules/PSPRIMA", {}),
        ):
            resp = c.get(path, params=params)
            url = urlsplit(str(resp.request.url))
            with pytest.raises(OpenAPIError):
                chk._validate(url.path, url.query, 200, resp.headers, resp.content)

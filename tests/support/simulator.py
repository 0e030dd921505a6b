"""Talking to the simulator as our client does: keys of the demo scenario, a client, scenario
loading, the OAuth authorization-code flow step by step, scenarios for edge cases."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from pagerduty_sim.server import SimulatorHandle

PD_ACCEPT = "application/vnd.pagerduty+json;version=2"
DEMO_KEY = "u+demoReadOnlyKey000001"
ALICE_KEY = "u+demoAliceUserKey00001"
BOB_KEY = "u+demoBobUserKey0000001"
EU_KEY = "u+eucoReadOnlyKey000001"
NOAPI_KEY = "u+noApiAccessKey000001"
REDIRECT = "http://127.0.0.1:9999/callback"


def api(
    sim: SimulatorHandle, *, key: str | None = DEMO_KEY, bearer: str | None = None, eu: bool = False
) -> httpx.Client:
    """A client that talks to the simulator the way our worker talks to PagerDuty."""
    headers = {"Accept": PD_ACCEPT}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    elif key is not None:
        headers["Authorization"] = f"Token token={key}"
    return httpx.Client(
        base_url=sim.eu_base_url if eu else sim.base_url, headers=headers, timeout=10.0
    )


def load(sim: SimulatorHandle, scenario: dict[str, Any]) -> None:
    resp = sim.control.put("/scenario", json={"scenario": scenario})
    assert resp.status_code == 200, resp.text


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize(
    sim: SimulatorHandle,
    *,
    client_id: str = "demo-client-id",
    scope: str = "openid users.read schedules.read oncalls.read abilities.read",
    redirect_uri: str = REDIRECT,
    challenge: str | None = None,
    state: str = "st-123",
) -> httpx.Response:
    """GET /oauth/authorize without following the redirect."""
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": state,
        "code_challenge": challenge or pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    return httpx.get(f"{sim.identity_url}/oauth/authorize", params=params, timeout=10.0)


def redirect_params(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["location"]).query).items()}


def get_code(sim: SimulatorHandle, verifier_challenge: tuple[str, str], **kw: Any) -> str:
    sim.control.post("/auto_approve", json={"enabled": True}).raise_for_status()
    params = redirect_params(authorize(sim, challenge=verifier_challenge[1], **kw))
    return params["code"]


def exchange(
    sim: SimulatorHandle,
    code: str,
    verifier: str,
    *,
    client_id: str = "demo-client-id",
    client_secret: str = "demo-client-secret",  # noqa: S107
    redirect_uri: str = REDIRECT,
) -> httpx.Response:
    return httpx.post(
        f"{sim.identity_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
        },
        timeout=10.0,
    )


TokenFactory = Callable[..., dict[str, Any]]


def user_scenario(n_users: int) -> dict[str, Any]:
    """A one-account scenario with exactly n users (for pagination edges)."""
    return {
        "accounts": [
            {
                "id": "pag",
                "subdomain": "pag",
                "users": [
                    {
                        "id": f"PU{i:05d}",
                        "name": f"User {i:05d}",
                        "email": f"user{i:05d}@pag.example",
                    }
                    for i in range(n_users)
                ],
            }
        ],
        "api_keys": [{"label": "pag-key", "key": DEMO_KEY, "account": "pag"}],
    }


LAYERED: dict[str, Any] = {
    "accounts": [
        {
            "id": "lay",
            "subdomain": "lay",
            "users": [
                {"id": u, "name": u, "email": f"{u.lower()}@lay.example"}
                for u in ("PUA", "PUB", "PUC", "PUD")
            ],
            "schedules": [
                {
                    "id": "PSLAY",
                    "name": "Layered",
                    "time_zone": "UTC",
                    "layers": [
                        {
                            "start": "2024-01-01T00:00:00Z",
                            "rotation_turn_length_seconds": 86400,
                            "users": ["PUA", "PUB"],
                        },
                        # later layer: business hours, Jan 2-4; wins where it has someone
                        {
                            "start": "2024-01-02T00:00:00Z",
                            "end": "2024-01-04T00:00:00Z",
                            "rotation_turn_length_seconds": 86400,
                            "users": ["PUC", "PUD"],
                            "restrictions": [
                                {
                                    "type": "daily_restriction",
                                    "start_time_of_day": "09:00:00",
                                    "duration_seconds": 28800,
                                }
                            ],
                        },
                    ],
                }
            ],
        }
    ],
    "api_keys": [{"label": "lay-key", "key": DEMO_KEY, "account": "lay"}],
}

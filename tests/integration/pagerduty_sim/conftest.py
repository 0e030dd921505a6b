"""One simulator per test session (real HTTP on a free port), reset to the demo before each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pagerduty_sim.server import SimulatorHandle, start_simulator
from tests.support.simulator import TokenFactory, api, exchange, get_code, pkce_pair


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorHandle]:
    with start_simulator("demo") as handle:
        yield handle


@pytest.fixture(autouse=True)
def _fresh(sim: SimulatorHandle) -> None:
    sim.control.post("/reset").raise_for_status()


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with api(sim) as c:
        yield c


@pytest.fixture
def oauth_tokens(sim: SimulatorHandle) -> TokenFactory:
    """Run the whole authorization-code flow and return the token response."""

    def run(**kw: Any) -> dict[str, Any]:
        creds = {k: kw.pop(k) for k in ("client_id", "client_secret") if k in kw}
        pair = pkce_pair()
        code = get_code(sim, pair, client_id=creds.get("client_id", "demo-client-id"), **kw)
        resp = exchange(sim, code, pair[0], **creds)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return run

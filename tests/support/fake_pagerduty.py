"""An in-process PagerDuty: the simulator's ASGI app behind an httpx transport, no sockets.

``InProcessPagerDuty(state)`` runs the real ``PagerDutyClient`` code (transport, retries,
parsing) against a ``pagerduty_sim.state.SimState``: a plain ``httpx.Client`` whose transport
(``InProcessTransport``) hands each request to the ASGI app on an event loop of its own (one
thread, started once). Domain functions take its factories where they take a client factory:

* ``reader_factory`` has the shape of ``workers.pagerduty.factory.pagerduty_client``
  (``activation.validate_api_key(..., client_factory=fake.reader_factory)``);
* ``sync_factory`` takes a ``ConnectionCredential`` (``run.sync_once(..., client_factory=...)``).

Whatever API host the settings name, US requests go to the app's ``/`` and EU ones to ``/eu``.
``control`` is the simulator's control API (``/_sim``) on the same app.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from pagerduty_sim.app import SimApp
from pagerduty_sim.state import SimState
from workers.connections.tokens import ConnectionCredential
from workers.core.settings import get_settings
from workers.pagerduty.client import PagerDutyClient
from workers.pagerduty.records import Credential

BASE_URL = "http://pagerduty.test"


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that calls an ASGI app (httpx's own ``ASGITransport`` is
    async-only): requests run on a blocking portal's event loop, answers come back whole."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def call() -> httpx.Response:
            answer = await self._asgi.handle_async_request(
                httpx.Request(request.method, request.url, headers=request.headers, content=content)
            )
            body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return self._portal.call(call)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


class InProcessPagerDuty:
    def __init__(self, state: SimState | None = None, **state_options: Any) -> None:
        self.state = state or SimState("demo", **state_options)
        self.transport = InProcessTransport(SimApp(self.state))
        self.http = httpx.Client(transport=self.transport)
        self.control = httpx.Client(base_url=f"{BASE_URL}/_sim", transport=self.transport)
        self.clients: list[PagerDutyClient] = []

    def close(self) -> None:
        # Both clients share the transport: closing it once ends its event loop.
        self.transport.close()

    def __enter__(self) -> InProcessPagerDuty:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def api_key(self, label: str = "demo-readonly") -> str:
        return self.state.keys_by_label[label].key

    def credentials(self) -> dict[str, Any]:
        """What ``SimulatorHandle.credentials`` answers (so the demo helpers take either)."""
        response = self.control.get("/credentials")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def _base(self, base_url: str) -> str:
        eu = get_settings().pagerduty_eu_api_url.rstrip("/")
        return f"{BASE_URL}/eu" if base_url.rstrip("/") in (eu, f"{BASE_URL}/eu") else BASE_URL

    def reader_factory(
        self,
        base_url: str,
        credential: Credential,
        *,
        rate_limit_key: str | None = None,
        max_retries: int = 0,
    ) -> PagerDutyClient:
        """No shared limiter and no retries by default: a fault reaches the caller at once."""
        client = PagerDutyClient(
            self._base(base_url),
            credential,
            http=self.http,
            rate_limit_key=rate_limit_key,
            max_retries=max_retries,
            sleep=lambda _seconds: None,
        )
        self.clients.append(client)
        return client

    def sync_factory(self, cred: ConnectionCredential) -> PagerDutyClient:
        return self.reader_factory(
            cred.api_base_url, cred.credential, rate_limit_key=f"conn-{cred.connection_id}"
        )

"""The ASGI application: one process serving REST (US at /, EU at /eu), /identity and /_sim."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import control, identity, rest
from .http import fmt_time, json_response
from .state import FaultRule, SimState


class SimApp:
    """A plain ASGI callable (no middleware stack) so per-request overhead stays tiny."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        path: str = request.url.path
        state = self.state
        if path == "/_sim" or path.startswith("/_sim/"):
            return await control.dispatch(state, request, path[len("/_sim") :] or "/")
        if path.startswith("/identity/"):
            handler = identity.ROUTES.get((request.method, path))
            label = identity.client_label(state, request)
            endpoint = f"{request.method} {path}" if handler else f"{request.method} (unknown)"

            async def inner() -> Response:
                if handler is None:
                    return json_response({"error": "not_found"}, 404)
                return await handler(state, request)

            return await self.guarded(request, endpoint, label, inner)
        region, sub = (
            ("eu", path[3:] or "/") if path == "/eu" or path.startswith("/eu/") else ("us", path)
        )
        matched = rest.match(sub)
        prefix = "/eu" if region == "eu" else ""
        endpoint = (
            f"{request.method} {prefix}{matched[0].template}"
            if matched
            else (f"{request.method} (unknown)")
        )
        label = rest.credential_label(state, request)

        async def rest_inner() -> Response:
            return await rest.dispatch(state, request, region, sub, matched)

        return await self.guarded(request, endpoint, label, rest_inner)

    async def guarded(self, request: Request, endpoint: str, label: str, inner: Any) -> Response:
        """Count the request, apply fault rules and latency, then run the real handler."""
        state = self.state
        q = request.query_params
        query = {k: q.getlist(k) for k in q}
        state.by_endpoint[endpoint] += 1
        state.by_path[request.url.path] += 1
        state.by_credential[label] += 1
        rules = (
            state.matching_faults(request.method, request.url.path, query) if state.faults else []
        )
        delay = state.latency_ms / 1000.0
        for r in rules:
            if r.kind == "latency":
                delay += r.latency_ms / 1000.0
            elif r.kind == "timeout":
                delay += r.seconds or 30.0
        if delay > 0:
            await asyncio.sleep(delay)
        response: Response | None = None
        truncate: FaultRule | None = None
        for r in rules:
            if r.kind == "error":
                body = (
                    r.body
                    if r.body is not None
                    else ('{"error":{"message":"Internal Server Error"}}')
                )
                ctype = "application/json; charset=utf-8" if r.body is None else "text/plain"
                response = Response(body.encode(), r.status or 500, headers={"content-type": ctype})
                break
            if r.kind == "non_json":
                body = r.body or "<html><body><h1>502 Bad Gateway</h1></body></html>"
                response = Response(body.encode(), r.status or 200, media_type="text/html")
                break
            if r.kind == "truncated":
                truncate = r
        if response is None:
            response = await inner()
            if truncate is not None:
                full = bytes(response.body)
                cut = full[: max(1, len(full) // 2)]
                headers = {
                    k: v for k, v in response.headers.items() if k.lower() != "content-length"
                }
                response = Response(cut, truncate.status or response.status_code, headers=headers)
        state.by_status[str(response.status_code)] += 1
        state.recent.append(
            {
                "at": fmt_time(state.now()),
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "endpoint": endpoint,
                "credential": label,
                "accept": request.headers.get("accept"),
                "status": response.status_code,
                "faults": [r.id for r in rules],
            }
        )
        return response


def create_app(state: SimState | None = None, **kwargs: Any) -> SimApp:
    return SimApp(state or SimState(**kwargs))

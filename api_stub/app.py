"""The HTTP API (ASGI, FastAPI). Connect and disconnect requests become Celery tasks."""

from __future__ import annotations

from fastapi import FastAPI

from api_stub import health


def create_app() -> FastAPI:
    app = FastAPI(
        title="rr-pagerduty API",
        version="1.0.0",
        description="Connects Round Robin workspaces to PagerDuty.",
    )
    app.include_router(health.router)
    return app

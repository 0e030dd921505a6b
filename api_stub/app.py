"""The HTTP API (ASGI, FastAPI). Connect and disconnect requests become Celery tasks."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api_stub import health, record_routes, report_routes, routes
from api_stub import metrics as metrics_routes
from api_stub.docs_ui import install_docs
from api_stub.errors import (
    RETRY_AFTER_SECONDS,
    BodySizeLimit,
    ErrorResponse,
    install_error_handlers,
)
from api_stub.panel import report as panel_report
from api_stub.panel import routes as panel_routes
from api_stub.schemas import REQUEST_MODELS
from workers.core.settings import get_settings

# Any /v1 operation answers this while PostgreSQL or Redis is down (api_stub.errors).
UNAVAILABLE_DOC: dict[str, Any] = {
    "description": "PostgreSQL or Redis is not answering (`service_unavailable`; `details` names "
    "the dependency). Try again after `Retry-After` seconds.",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "example": RETRY_AFTER_SECONDS},
        }
    },
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def create_app() -> FastAPI:
    # /openapi.json stays public everywhere: it is the documented contract (docs/api.md) and
    # names no data. Swagger UI and ReDoc (/docs, /redoc, their files under /docs/static) are
    # off in production: nobody needs an interactive console there, and megabytes of
    # third-party script have no business in the panel's origin. FastAPI's own pages are off
    # everywhere: they load from a CDN (api_stub.docs_ui serves ours offline).
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        title="rr-pagerduty API",
        version="1.0.0",
        description="Connects Round Robin workspaces to PagerDuty. Authenticate with "
        "`Authorization: Bearer <JWT>` (HS256; claims sub, workspace_id, role, exp). Every "
        'error is `{"error": {"code": "...", "message": "..."}}`. See docs/api.md.',
    )
    if not get_settings().is_production:
        install_docs(app)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.include_router(health.router)
    app.include_router(routes.router)
    app.include_router(record_routes.router)
    app.include_router(report_routes.router)
    app.include_router(panel_routes.router)
    app.include_router(panel_report.router)
    app.include_router(metrics_routes.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        # Bodies are parsed after authorization (so a stranger learns nothing from 422s);
        # their models are added here for the document.
        models: tuple[type[BaseModel], ...] = (*REQUEST_MODELS, ErrorResponse)
        for model in models:
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in model_schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[model.__name__] = model_schema
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            # /metrics: the operators' credential (RRPD_FLOWER_BASIC_AUTH), as for Flower.
            "operators": {"type": "http", "scheme": "basic"},
        }
        for path, ops in schema.get("paths", {}).items():
            if path.startswith("/v1/"):
                for op in ops.values():
                    op.setdefault("responses", {})["503"] = UNAVAILABLE_DOC
            if path.startswith("/v1/") and path != "/v1/pagerduty/oauth/callback":
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
            elif path == "/metrics":
                for op in ops.values():
                    op["security"] = [{"operators": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

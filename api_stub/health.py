"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from workers.core.db import get_engine
from workers.core.redis import client as redis_client
from workers.core.settings import ConfigurationError, get_settings
from workers.core.startup import check_configuration

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The configuration is usable and the database and the broker answer",
    responses={503: {"description": "Not ready; `checks` says which part and why."}},
)
def readyz() -> JSONResponse:
    checks: dict[str, str] = {}
    # A bad key list or JWT secret would answer every connect with a 500: not ready. The
    # messages name variables and key ids, never key material.
    try:
        check_configuration(get_settings())
        checks["configuration"] = "ok"
    except ConfigurationError as exc:
        checks["configuration"] = f"invalid: {exc}"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        redis_client().ping()
        checks["broker"] = "ok"
    except redis.RedisError as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )

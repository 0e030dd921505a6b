"""The base of every read model: what the API answers, the panel renders and ``rrpd`` prints.

A read model is one immutable, typed class per shape, filled by one constructor call, and it is
the API's response schema itself (``api_stub/schemas.py`` re-exports it, so the OpenAPI
document describes exactly what the code builds). Pydantic, because the API validates and
documents its responses with it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReadModel(BaseModel):
    """Frozen: a view is read, never edited on its way out."""

    model_config = ConfigDict(frozen=True)

"""Structured logs: JSON lines in production, readable lines locally; never a secret.

Every line logged inside a task carries the task id and name, and the workspace and connection
ids when the task has them (bound through contextvars by the task base).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from workers.settings import get_settings

# Values that look like credentials are masked wherever they appear in a log line. This is a
# second line of defence: code never logs secrets on purpose.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(token token=)[^\s\"']+"),
    re.compile(r"(?i)(bearer )[^\s\"']+"),
    re.compile(
        r"(?i)((?:api_key|access_token|refresh_token|client_secret|code_verifier|code|password"
        r"|id_token)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
]
_SECRET_KEYS = {
    "api_key",
    "access_token",
    "refresh_token",
    "client_secret",
    "code_verifier",
    "code",
    "password",
    "authorization",
    "id_token",
    "secret",
    "token",
}


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


def _redact_event(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event_dict.items()):
        if key.lower() in _SECRET_KEYS and value is not None:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def bind_task_context(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(
        **{k: str(v) for k, v in values.items() if v is not None}
    )


def unbind_task_context() -> None:
    structlog.contextvars.clear_contextvars()


_configured = False


def configure_logging(force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    settings = get_settings()
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production or not sys.stderr.isatty() else "console"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs full URLs at INFO; they carry no secrets, but they are noise at fleet scale.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True

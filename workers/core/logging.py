"""Structured logs: JSON lines in production, readable lines locally; never a secret.

Every line logged inside a task carries the task id and name, and the workspace and connection
ids when the task has them: bound through contextvars from Celery's ``task_prerun`` to
``task_postrun`` (so Celery's own "succeeded", "retry" and "raised" lines carry them) and by the
task base. Celery's "received" line, logged by the worker outside the task, gets them from the
``data`` Celery attaches. Redaction walks nested values too: Celery attaches the call's
arguments and the traceback as a dict.
"""

from __future__ import annotations

import ast
import contextvars
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from celery.signals import task_postrun, task_prerun

from workers.core.settings import get_settings

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


def _redact_value(key: str | None, value: Any, depth: int = 0) -> Any:
    if value is None:
        return None
    if key is not None and key.lower() in _SECRET_KEYS:
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)):
        return value
    if depth < 6 and isinstance(value, dict):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 6 and isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(None, v, depth + 1) for v in value]
    # Anything else would be rendered with repr(); redact that text instead.
    return redact(repr(value))


def _redact_event(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


# --- task context -------------------------------------------------------------------------------

_CONTEXT_KWARGS = ("connection_id", "workspace_id")


def _kwargs_ids(kwargs: Any) -> dict[str, str]:
    """``connection_id``/``workspace_id`` from a task's kwargs (a dict or Celery's repr of one)."""
    if isinstance(kwargs, str):
        try:
            kwargs = ast.literal_eval(kwargs)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return {}
    if not isinstance(kwargs, dict):
        return {}
    return {k: str(kwargs[k]) for k in _CONTEXT_KWARGS if kwargs.get(k) is not None}


def _celery_context(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Celery logs some task lines outside the task (the worker's "received" line) with
    ``extra={"data": {"id", "name", "kwargs", ...}}``: lift those into the usual fields."""
    data = event_dict.get("data")
    if isinstance(data, dict) and data.get("id") and data.get("name"):
        event_dict.setdefault("task_id", str(data["id"]))
        event_dict.setdefault("task_name", str(data["name"]))
        for key, value in _kwargs_ids(data.get("kwargs")).items():
            event_dict.setdefault(key, value)
    return event_dict


# Bindings nest: Celery's task_prerun binds the outer layer (so Celery's own "succeeded",
# "retry" and "raised" lines, logged after the task body returns, still carry the ids), the task
# base binds again around the body; unbinding restores the layer below instead of clearing.
_binding_stack: contextvars.ContextVar[tuple[Mapping[str, Any], ...]] = contextvars.ContextVar(
    "rrpd_log_bindings", default=()
)


def bind_task_context(**values: Any) -> None:
    tokens = structlog.contextvars.bind_contextvars(
        **{k: str(v) for k, v in values.items() if v is not None}
    )
    _binding_stack.set((*_binding_stack.get(), tokens))


def unbind_task_context() -> None:
    stack = _binding_stack.get()
    if not stack:
        structlog.contextvars.clear_contextvars()
        return
    structlog.contextvars.reset_contextvars(**stack[-1])
    _binding_stack.set(stack[:-1])


def _clear_task_context() -> None:
    structlog.contextvars.clear_contextvars()
    _binding_stack.set(())


def _bind_on_prerun(
    sender: Any = None, task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any
) -> None:
    _clear_task_context()
    ids = _kwargs_ids(kwargs)
    bind_task_context(
        task_id=task_id,
        task_name=getattr(task or sender, "name", None),
        connection_id=ids.get("connection_id"),
        workspace_id=ids.get("workspace_id"),
    )


def _clear_on_postrun(**_: Any) -> None:
    _clear_task_context()


task_prerun.connect(_bind_on_prerun, weak=False)
task_postrun.connect(_clear_on_postrun, weak=False)


_configured = False


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _celery_context,
    ]


def make_formatter(fmt: str, *, colors: bool = False) -> logging.Formatter:
    """The formatter every handler uses: ``json`` lines or readable ``console`` lines."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )


def configure_logging(force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    settings = get_settings()
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production or not sys.stderr.isatty() else "console"
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(fmt, colors=sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs full URLs at INFO; they carry no secrets, but they are noise at fleet scale.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True

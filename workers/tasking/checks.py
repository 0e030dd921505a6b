"""What a task argument's value must look like: the checks the contract declares per argument.

Each check takes the argument's name and the value a message carries and returns the value as
the task receives it, or raises ``Refused`` saying, in words, what is wrong. A refused message
is answered with ``refusal(...)`` (its result), logged once at WARNING and never retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


class Refused(ValueError):
    """A message the contract does not allow: unknown, missing or malformed arguments.

    A task that receives one answers ``refusal(...)`` (logged once at WARNING, acknowledged,
    never retried); ``enqueue`` raises it to our own callers.
    """


def _shown(value: Any) -> str:
    # Untrusted input in an error message: short, and never more than a prefix of it.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


Check = Callable[[str, Any], Any]


def uuid_text(name: str, value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise Refused(f"{name} must be a UUID, got {_shown(value)}")


def optional_uuid_text(name: str, value: Any) -> str | None:
    return None if value is None else uuid_text(name, value)


def whole_number(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise Refused(f"{name} must be a whole number, got {_shown(value)}")


def uuid_list(limit: int) -> Check:
    def check(name: str, value: Any) -> list[str]:
        if isinstance(value, list) and 0 < len(value) <= limit:
            return [uuid_text(name, item) for item in value]
        raise Refused(f"{name} must be a list of 1 to {limit} UUIDs, got {_shown(value)}")

    return check


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise Refused(f"{name} must be one of {', '.join(choices)}; got {_shown(value)}")

    return check


def short_text(limit: int) -> Check:
    def check(name: str, value: Any) -> str:
        if isinstance(value, str) and len(value) <= limit:
            return value
        raise Refused(f"{name} must be a string of at most {limit} characters")

    return check


def refusal(name: str, error: str) -> dict[str, str]:
    """What a refused message answers (its result): says what was wrong, in words."""
    return {"status": "refused", "task": name, "error": error}

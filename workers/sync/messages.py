"""Every sentence a sync writes for a workspace admin (``SyncRun.error``, ``last_error``)."""

from __future__ import annotations

INVALID_KEY = (
    "PagerDuty rejected this API key (it was deleted, or belongs to a user who was removed). "
    "Connect again with a new read-only API key to resume syncing; rotations keep their last "
    "state until then."
)
OAUTH_REJECTED = (
    "PagerDuty refused this connection's login even after refreshing it. Log in with OAuth 2.0 "
    "again to resume syncing; rotations keep their last state until then."
)
NO_API_ACCESS = (
    "This PagerDuty account's plan does not include REST API access, so Round Robin cannot "
    "read its schedules. Rotations keep their last state."
)
FENCED = (
    "The connection changed while this sync ran (disconnected, reconnected, its credential was "
    "replaced, or it needs attention); nothing was written."
)
SCHEDULE_NOT_LISTED = "PagerDuty no longer lists it (deleted, or not visible to this connection)"
ON_CALL_UNREADABLE = "its on-call could not be read"


def rate_limited(wait: float | None) -> str:
    return (
        "PagerDuty's rate limit for this account was reached; the sync will be retried "
        f"in about {round(wait) if wait is not None else 'a few'} seconds."
    )


def transient(error: object) -> str:
    return f"PagerDuty could not be read right now ({error}); the sync will be retried."


def forbidden(missing: tuple[str, ...]) -> str:
    return (
        "PagerDuty refused to show users or schedules to this connection"
        + (f" (it lacks: {', '.join(missing)})" if missing else "")
        + ". Reconnect with a credential that can read users and schedules."
    )


def too_large(error: object) -> str:
    return (
        f"This PagerDuty account is too large for PagerDuty's API to list in full ({error}); "
        "nothing was changed."
    )


def unusable(error: object) -> str:
    return f"PagerDuty answered in a way we cannot use ({error}); nothing changed."


def internal_error(error: BaseException) -> str:
    return f"The sync stopped on an internal error ({type(error).__name__})."


def rotation_kept(rotation_name: str, schedule_id: str | None, why: str) -> str:
    return (
        f"Rotation {rotation_name!r} is bound to PagerDuty schedule {schedule_id}: {why}. It "
        "keeps its last members and on-duty people until it is bound to another schedule or "
        "made Manual."
    )


def schedule_kept(rotation_name: str, schedule_id: str, why: str) -> str:
    """One of several schedules a rotation follows could not be read: the others are followed."""
    return (
        f"Rotation {rotation_name!r} follows PagerDuty schedule {schedule_id} among others: "
        f"{why}. It keeps the people that schedule last had on call (and, if the schedule is "
        "not listed, its last members) until it is readable again, bound otherwise or made Manual."
    )

"""Why a sync runs and how it ended. ``SyncKind`` and ``SyncRunStatus`` are the models' (the
values stored in ``sync_runs.kind``/``status``); ``Outcome`` is what a sync task returns: a
recorded run's status, or an ending that records no run (``unavailable``, ``coalesced``).
StrEnum members compare and serialise as their strings."""

from __future__ import annotations

from enum import StrEnum

from models.activity import SyncKind, SyncRunStatus

__all__ = ["DIRECTORY_KINDS", "Outcome", "RetryReason", "SyncKind", "SyncRunStatus", "run_status"]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNAVAILABLE = "unavailable"
    COALESCED = "coalesced"


class RetryReason(StrEnum):
    """Why a failed sync's task retries: after PagerDuty's rate-limit reset, or with backoff."""

    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"


# Syncs that someone or something asked for read the directory whatever its age.
DIRECTORY_KINDS = frozenset({SyncKind.MANUAL, SyncKind.INITIAL, SyncKind.BINDING})


def run_status(outcome: Outcome) -> SyncRunStatus:
    """The status a run recorded with ``outcome`` is stored as (only recorded endings have one)."""
    return SyncRunStatus(outcome.value)

"""Why a sync runs and how it ended: the values stored in ``sync_runs.kind``/``status`` and
returned by the tasks, unchanged (StrEnum members compare and serialise as those strings)."""

from __future__ import annotations

from enum import StrEnum


class SyncKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    INITIAL = "initial"
    BINDING = "binding"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNAVAILABLE = "unavailable"
    COALESCED = "coalesced"


# Syncs that someone or something asked for read the directory whatever its age.
DIRECTORY_KINDS = frozenset({SyncKind.MANUAL, SyncKind.INITIAL, SyncKind.BINDING})

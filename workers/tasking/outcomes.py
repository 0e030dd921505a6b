"""What each task's result says and who is meant to send it: the rest of the public contract.

``workers.tasking.docs`` renders both into docs/tasks.md beside the task table; a test compares
each task's words with the ones its code can return (the ``Literal`` types of
``workers.connections.activation`` and ``tasks.connections``, the sync's ``SyncResult``
statuses; a disconnect's are the ``DisconnectOutcome`` enum below, which its code returns), so
a word cannot be added or renamed unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Word:
    word: str
    meaning: str


# Every task answers this, in ``status``, to a message the contract refuses
# (workers.tasking.checks).
REFUSED = Word(
    "refused",
    "the message does not match the contract (`error` says how); it was not run and is not retried",
)

_CHECK = (
    Word(
        "connected", "the credential works: the connection is `connected`, its first sync enqueued"
    ),
    Word(
        "invalid",
        "the connection is `invalid`: PagerDuty refused the credential, or it could not be checked "
        "within the retries; `message` holds the admin's words",
    ),
    Word(
        "stale",
        "nothing done: the connection or login moved on meanwhile (gone, no longer `validating`, "
        "another generation, or another delivery took the code); sending it again changes nothing",
    ),
    Word(
        "pending_accepted",
        "a new credential checked beside the live one replaced it; a sync starts",
    ),
    Word("pending_rejected", "PagerDuty refused the new credential; the live one keeps serving"),
    Word(
        "pending_lost",
        "the new credential could not be checked (retries spent, a crash loop, its deadline); the "
        "live one keeps serving",
    ),
    Word(
        "pending_account_change",
        "the new credential is of another PagerDuty account; it waits for the admin to confirm "
        "or discard it",
    ),
)


class DisconnectOutcome(StrEnum):
    """What ``pagerduty.disconnect`` answers in ``status`` (workers.disconnect.transaction)."""

    DISCONNECTED = "disconnected"
    ALREADY_DISCONNECTED = "already_disconnected"
    NOT_FOUND = "not_found"


# What each means: docs/tasks.md's rows for the task are generated from the enum and this.
DISCONNECT_MEANINGS: dict[DisconnectOutcome, str] = {
    DisconnectOutcome.DISCONNECTED: "done now: rotations Manual, credentials and copies deleted",
    DisconnectOutcome.ALREADY_DISCONNECTED: "it was done before; nothing written",
    DisconnectOutcome.NOT_FOUND: "no connection has this id; nothing done",
}

# task name -> (the result field holding the word, its words); refused is every task's too.
RESULT_WORDS: dict[str, tuple[str, tuple[Word, ...]]] = {
    "pagerduty.validate_api_key": ("outcome", _CHECK),
    "pagerduty.exchange_oauth_code": ("outcome", _CHECK),
    "pagerduty.refresh_token": (
        "outcome",
        (
            Word("valid", "the connection holds a usable token (refreshed or not); `expires_at`"),
            Word(
                "needs_reauth",
                "PagerDuty refused the refresh token: the connection is `needs_reauth` until the "
                "admin logs in again",
            ),
            Word(
                "skipped",
                "nothing done: no such connection (`status` null) or it is not `connected` or "
                "`validating` (`status` says what it is)",
            ),
        ),
    ),
    "pagerduty.sync_connection": (
        "status",
        (
            Word(
                "succeeded",
                "read and applied; `created`, `updated`, `deleted` count the rows. A scheduled "
                "pass that changed nothing records no run (no `sync_run_id`)",
            ),
            Word(
                "failed",
                "the sync ran and failed (PagerDuty unreachable after the retries, refused, an "
                "error of ours); `error` says why; recorded, and beat backs off",
            ),
            Word(
                "skipped",
                "fenced: the connection was disconnected, reconnected or left `connected` during "
                "the sync; recorded, nothing else written",
            ),
            Word(
                "unavailable",
                "not a transient failure: there is nothing to sync. `error` is `connection is "
                "missing` (no connection has this id) or `connection is <status>` (`disconnected`, "
                "`invalid`, `needs_reauth`...); nothing recorded, and sending it again does the "
                "same until the workspace connects",
            ),
            Word(
                "coalesced",
                "a sync of this connection was running: it makes one more pass for this request, "
                "which records no run of its own",
            ),
        ),
    ),
    "pagerduty.disconnect": (
        "status",
        tuple(Word(o.value, DISCONNECT_MEANINGS[o]) for o in DisconnectOutcome),
    ),
}

# Who is meant to send each task. Any process with broker access *can* send any of them.
SENDERS: dict[str, str] = {
    "pagerduty.validate_api_key": "internal: the API, when a key is stored. Its `generation` is "
    "in the PUT's answer only (and a pending key's in none); any other is `stale`",
    "pagerduty.exchange_oauth_code": "internal: the OAuth callback. Its `authorization_id` is "
    "shown by no API",
    "pagerduty.refresh_token": "other services (the `connection_id` of the status document); "
    "beat's 5-minute round sends it for tokens near expiry",
    "pagerduty.refresh_expiring_tokens": "beat only",
    "pagerduty.sync_connection": 'other services (`kind="manual"`); beat (`scheduled`), the '
    "API (`manual`, `binding`) and a connect (`initial`)",
    "pagerduty.check_connections": "beat only (the fan-out's batches; one sent by name checks "
    "the connections it names, skipping any being synced)",
    "pagerduty.schedule_syncs": "beat only (one sent by name runs as a round: it syncs what is "
    "due)",
    "pagerduty.disconnect": "other services (`actor_member_id`: the member who asked); the API's "
    "DELETE",
    "pagerduty.revoke_tokens": "nobody (deprecated)",
    "rrpd.ping": "operators and health checks",
}

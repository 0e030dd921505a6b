"""A workspace's link to a PagerDuty account, and pending OAuth logins.

Every secret is an ``EncryptedText`` column (``models.types``): the attribute holds the
plaintext in memory, the database column (named ``*_encrypted``) the ciphertext
(``v1:<key id>:<token>``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, UUIDPrimaryKey, utcnow, values_in
from models.types import EncryptedText, string_enum


class AuthMethod(StrEnum):
    API_KEY = "api_key"
    OAUTH = "oauth"


class Region(StrEnum):
    US = "us"
    EU = "eu"


class KeyLevel(StrEnum):
    ACCOUNT = "account"
    USER = "user"


class ConnectionStatus(StrEnum):
    VALIDATING = "validating"
    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"
    INVALID = "invalid"
    DISCONNECTING = "disconnecting"
    DISCONNECTED = "disconnected"


class PendingStatus(StrEnum):
    """A replacement credential waiting beside the live one (docs/api.md, "pending")."""

    CHECKING = "checking"
    REJECTED = "rejected"
    LOST = "lost"  # its check did not finish by its deadline
    ACCOUNT_CHANGE = "account_change"


S = ConnectionStatus
# The one place the lifecycle is written down. "validating" is re-entered when a workspace
# admin replaces the key or logs in again; "disconnected" is final for the row (a reconnect
# creates a new row, which the partial unique index allows).
ALLOWED_TRANSITIONS: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    S.VALIDATING: frozenset({S.VALIDATING, S.CONNECTED, S.INVALID, S.DISCONNECTING}),
    S.CONNECTED: frozenset({S.VALIDATING, S.NEEDS_REAUTH, S.INVALID, S.DISCONNECTING}),
    S.NEEDS_REAUTH: frozenset({S.VALIDATING, S.CONNECTED, S.INVALID, S.DISCONNECTING}),
    S.INVALID: frozenset({S.VALIDATING, S.DISCONNECTING}),
    S.DISCONNECTING: frozenset({S.DISCONNECTED}),
    S.DISCONNECTED: frozenset(),
}


@dataclass(frozen=True)
class StatusMeaning:
    """What one status means to every part that asks; the sets they use are derived below."""

    # Plain words for a workspace admin when the connection has no specific ``last_error``.
    words: str | None
    # Its credentials may be used: a token refresh, a check of the connection.
    usable: bool = False
    # Scheduled handoffs are applied (a reauth only stops reading PagerDuty, not the plan).
    applying: bool = False
    # Beat syncs it (whatever ``next_sync_at`` says otherwise); else ``no_sync_because``.
    syncs: bool = False
    no_sync_because: str | None = None
    # A workspace admin must act: ``rrpd attention`` lists it.
    needs_attention: bool = False
    # Seconds from the request of the task it waits for to its first deadline (workers.deadlines
    # drives it again then; docs/operations.md, "Deadlines"). Short: a delivered task starts
    # within a second and pushes the deadline forward itself. Entering the status requests the
    # task when ``task_on_entry``; a connected connection waits only for a "sync now", which
    # shares the sync queue with beat's syncs and so may wait behind them a while.
    deadline: float | None = None
    task_on_entry: bool = False
    # What ``rrpd attention`` calls it once past that deadline: stuck from then on, not before.
    stuck_problem: str | None = None


# The one place that says what each status means (a test checks every status has a row).
STATUS_MEANINGS: dict[ConnectionStatus, StatusMeaning] = {
    S.VALIDATING: StatusMeaning(
        "Checking the PagerDuty credentials.",
        usable=True,
        applying=True,
        no_sync_because="the first sync follows a successful check of the credentials",
        deadline=8.0,
        task_on_entry=True,
        stuck_problem="stuck_validating",
    ),
    S.CONNECTED: StatusMeaning(
        "Connected to PagerDuty.",
        usable=True,
        applying=True,
        syncs=True,
        deadline=15.0,
        stuck_problem="sync_now_late",
    ),
    S.NEEDS_REAUTH: StatusMeaning(
        "PagerDuty needs you to log in again.",
        applying=True,
        no_sync_because="syncs are paused until an admin logs in with OAuth 2.0 again "
        "(rotations keep their last state)",
        needs_attention=True,
    ),
    S.INVALID: StatusMeaning(
        "PagerDuty refused these credentials.",
        no_sync_because="syncs are paused until an admin connects with credentials PagerDuty "
        "accepts",
        needs_attention=True,
    ),
    S.DISCONNECTING: StatusMeaning(
        "Disconnecting from PagerDuty.",
        no_sync_because="the connection is being disconnected",
        deadline=5.0,
        task_on_entry=True,
        stuck_problem="stuck_disconnecting",
    ),
    S.DISCONNECTED: StatusMeaning(None),
}


def statuses(has: Callable[[StatusMeaning], object]) -> frozenset[ConnectionStatus]:
    """The statuses whose meaning ``has`` says yes to (in the enum's order when iterated)."""
    return frozenset(s for s in ConnectionStatus if has(STATUS_MEANINGS[s]))


LIVE_STATUSES = frozenset(s for s in ConnectionStatus if s is not S.DISCONNECTED)
# Seconds after entering a state that expects a task before the task is driven again.
PENDING_WORK_AFTER: dict[ConnectionStatus, float] = {
    s: m.deadline for s, m in STATUS_MEANINGS.items() if m.task_on_entry and m.deadline
}
# A pending credential's check: driven again this long after it was asked for.
PENDING_CHECK_AFTER = 8.0
SYNC_NOW_AFTER: float = STATUS_MEANINGS[S.CONNECTED].deadline or 0.0


class InvalidTransition(Exception):
    def __init__(self, current: str, wanted: str) -> None:
        current, wanted = str(current), str(wanted)  # a StrEnum member's str() is its value
        super().__init__(f"a connection cannot go from {current!r} to {wanted!r}")
        self.current = current
        self.wanted = wanted


class PagerDutyConnection(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "pagerduty_connections"
    __table_args__ = (
        CheckConstraint(values_in("auth_method", AuthMethod), name="auth_method"),
        CheckConstraint(values_in("region", Region), name="region"),
        CheckConstraint(values_in("status", ConnectionStatus), name="status"),
        CheckConstraint(values_in("pending_status", PendingStatus), name="pending_status"),
        CheckConstraint(values_in("pending_auth_method", AuthMethod), name="pending_auth_method"),
        CheckConstraint("generation >= 1", name="generation_positive"),
        # At most one live connection per workspace.
        Index(
            "uq_pagerduty_connections_live_workspace",
            "workspace_id",
            unique=True,
            postgresql_where=text("status <> 'disconnected'"),
            sqlite_where=text("status <> 'disconnected'"),
        ),
        Index("ix_pagerduty_connections_status_due", "status", "next_sync_at"),
        Index("ix_pagerduty_connections_drive_at", "drive_at"),
        Index("ix_pagerduty_connections_pending_drive_at", "pending_drive_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    auth_method: Mapped[AuthMethod] = mapped_column(string_enum(AuthMethod, 16))
    region: Mapped[Region] = mapped_column(string_enum(Region, 4), default=Region.US)
    status: Mapped[ConnectionStatus] = mapped_column(
        string_enum(ConnectionStatus, 16), default=ConnectionStatus.VALIDATING
    )
    # Bumped on every connect, credential change and disconnect: a task started under an older
    # generation must not write (fencing).
    generation: Mapped[int] = mapped_column(default=1)

    # Secrets load (and decrypt) only when code reads them: a row whose secret no configured
    # key can decrypt still loads for its status, a disconnect or a reconnect.
    api_key: Mapped[str | None] = mapped_column(
        "api_key_encrypted", EncryptedText, default=None, deferred=True
    )
    key_level: Mapped[KeyLevel | None] = mapped_column(string_enum(KeyLevel, 8), default=None)
    oauth_client_id: Mapped[str | None] = mapped_column(String(200), default=None)
    oauth_client_secret: Mapped[str | None] = mapped_column(
        "oauth_client_secret_encrypted", EncryptedText, default=None, deferred=True
    )
    access_token: Mapped[str | None] = mapped_column(
        "access_token_encrypted", EncryptedText, default=None, deferred=True
    )
    refresh_token: Mapped[str | None] = mapped_column(
        "refresh_token_encrypted", EncryptedText, default=None, deferred=True
    )
    access_token_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    token_refreshed_at: Mapped[datetime | None] = mapped_column(default=None)
    granted_scopes: Mapped[str | None] = mapped_column(Text, default=None)

    pagerduty_account_id: Mapped[str | None] = mapped_column(String(64), default=None)
    pagerduty_subdomain: Mapped[str | None] = mapped_column(String(200), default=None)
    pagerduty_user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Who an OAuth login acts as, as PagerDuty's /users/me named them at connect (all None when
    # that call failed, for API keys, and for logins connected before these columns).
    acting_user_name: Mapped[str | None] = mapped_column(String(300), default=None)
    acting_user_email: Mapped[str | None] = mapped_column(String(320), default=None)
    acting_user_role: Mapped[str | None] = mapped_column(String(64), default=None)

    connected_by_member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None
    )
    connected_at: Mapped[datetime | None] = mapped_column(default=None)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    disconnected_at: Mapped[datetime | None] = mapped_column(default=None)

    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Something the admin should know that is not an error (e.g. the key worked in the other
    # region than the one chosen, so the connection uses that one).
    notice: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    next_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the directory (users, schedule list, members) was last read in full: a sync reads it
    # again only after RRPD_DIRECTORY_INTERVAL_SECONDS (or on demand), per connection, across
    # restarts (workers.sync.run).
    directory_read_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the user directory (GET /users pages) was last listed: daily
    # (RRPD_USER_DIRECTORY_INTERVAL_SECONDS) and on demand; directory reads in between read
    # only people met for the first time, by id (workers.sync.run.users_due).
    users_read_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the upcoming read (each bound schedule's next 7 days, rotation_upcoming) was last
    # made: with a directory read once RRPD_UPCOMING_INTERVAL_SECONDS has passed, and on demand
    # (workers.sync.upcoming.upcoming_due).
    upcoming_read_at: Mapped[datetime | None] = mapped_column(default=None)
    consecutive_sync_failures: Mapped[int] = mapped_column(default=0)
    # The last scheduled check that found nothing to change (it writes no ``sync_runs`` row):
    # when it started, how long it took, how many PagerDuty requests it made. Status views
    # show it as the last sync when it is newer than the last recorded run.
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_check_ms: Mapped[int | None] = mapped_column(default=None)
    last_check_requests: Mapped[int | None] = mapped_column(default=None)
    # Pending work a task must do (validating, disconnecting, a requested "sync now") never
    # waits on a message alone: past ``drive_at`` the ``deadlines`` loop enqueues the task
    # again (workers.deadlines). Set where the state is entered, cleared when it is left.
    drive_at: Mapped[datetime | None] = mapped_column(default=None)
    drives: Mapped[int] = mapped_column(default=0)
    # A "sync now" not yet answered by a recorded run that started after it.
    sync_requested_at: Mapped[datetime | None] = mapped_column(default=None)

    # A replacement API key over a connected connection, checked while the live credentials
    # keep serving (workers.connections.pending). ``pending_generation`` is the generation it
    # gets if proven: its check is ``validate_api_key(connection_id, pending_generation)``,
    # fenced like any other. The key goes as soon as the check ends; the outcome stays for the
    # admin to read until the next credential change.
    pending_api_key: Mapped[str | None] = mapped_column(
        "pending_api_key_encrypted", EncryptedText, default=None, deferred=True
    )
    pending_region: Mapped[Region | None] = mapped_column(string_enum(Region, 4), default=None)
    # What is pending: an API key (``pending_api_key``; NULL in rows from before OAuth logins
    # could wait too) or an OAuth login (its ``oauth_authorizations`` row, attached to this
    # connection: the only login row a connected connection has).
    pending_auth_method: Mapped[AuthMethod | None] = mapped_column(
        string_enum(AuthMethod, 16), default=None
    )
    pending_status: Mapped[PendingStatus | None] = mapped_column(
        string_enum(PendingStatus, 16), default=None
    )
    pending_generation: Mapped[int | None] = mapped_column(default=None)
    pending_message: Mapped[str | None] = mapped_column(Text, default=None)
    pending_since: Mapped[datetime | None] = mapped_column(default=None)
    # The pending check's own deadline (``drive_at`` belongs to the connection's state and a
    # "sync now", which a sync run clears).
    pending_drive_at: Mapped[datetime | None] = mapped_column(default=None)
    pending_drives: Mapped[int] = mapped_column(default=0)
    # A pending key of another account (``account_change``): the key is kept (encrypted) until
    # the admin confirms the switch or discards it, and this holds what its check found:
    # ``{"subdomain", "previous_subdomain", "key_level", "notice", "schedules": {id: name}}``
    # (workers.connections.account_change), so the admin sees what happens to each bound
    # rotation before anything changes.
    pending_account: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    def can_transition(self, new: ConnectionStatus) -> bool:
        return new in ALLOWED_TRANSITIONS[ConnectionStatus(self.status)]

    def transition(self, new: ConnectionStatus, *, error: str | None = None) -> None:
        """Move to ``new`` or raise; ``error`` is shown to workspace admins as is."""
        if not self.can_transition(new):
            raise InvalidTransition(self.status, new)
        self.status = new
        self.status_changed_at = utcnow()
        # Whatever was pending belongs to the state being left.
        self.sync_requested_at = None
        if new is not ConnectionStatus.CONNECTED:
            # A pending credential waits beside a connected connection only: once that one
            # breaks or goes, a new credential replaces directly (its secret goes now).
            self.clear_pending()
        if new in PENDING_WORK_AFTER:
            self.expect_work(self.status_changed_at)
        else:
            self.drive_at = None
            self.drives = 0
        if error is not None:
            self.last_error = error
            self.last_error_at = self.status_changed_at
        elif new is ConnectionStatus.CONNECTED:
            self.last_error = None
            self.last_error_at = None

    def expect_work(self, now: datetime, after: float | None = None) -> None:
        """A task is on its way: drive it again if nothing is done by ``now + after``."""
        wait = PENDING_WORK_AFTER.get(ConnectionStatus(self.status), SYNC_NOW_AFTER)
        self.drive_at = now + timedelta(seconds=wait if after is None else after)
        self.drives = 0

    def clear_pending(self) -> None:
        """Forget the pending credential and its outcome (superseded by a direct change)."""
        self.pending_api_key = None
        self.pending_region = None
        self.pending_auth_method = None
        self.pending_status = None
        # ``pending_generation`` stays: the next pending credential (or direct change) gets a
        # higher generation, so a late check of this one can never be taken for it.
        self.pending_message = None
        self.pending_since = None
        self.pending_drive_at = None
        self.pending_drives = 0
        self.pending_account = None

    def clear_credentials(self) -> None:
        self.api_key = None
        self.oauth_client_secret = None
        self.access_token = None
        self.refresh_token = None
        self.access_token_expires_at = None


class OAuthAuthorization(UUIDPrimaryKey, Base):
    """A pending OAuth login: created by the API, consumed once by the callback, deleted when it
    ends (connected, refused, superseded, disconnected, or an hour past its expiry)."""

    __tablename__ = "oauth_authorizations"
    __table_args__ = (CheckConstraint(values_in("region", Region), name="region"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pagerduty_connections.id", ondelete="CASCADE"), default=None, index=True
    )
    # SHA-256 of the state sent to PagerDuty; the state itself is never stored.
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_verifier: Mapped[str] = mapped_column("code_verifier_encrypted", EncryptedText)
    client_id: Mapped[str] = mapped_column(String(200))
    client_secret: Mapped[str] = mapped_column("client_secret_encrypted", EncryptedText)
    region: Mapped[Region] = mapped_column(string_enum(Region, 4))
    # The authorization code from the callback, encrypted, until the exchange task uses it.
    code: Mapped[str | None] = mapped_column("code_encrypted", EncryptedText, default=None)
    # What PagerDuty's token endpoint issued for this login (a JSON token set, encrypted), from
    # the exchange until its id_token is verified: a check that failed for a blip is tried
    # again without the spent code. Deleted with the login.
    issued_tokens: Mapped[str | None] = mapped_column(
        "issued_tokens_encrypted", EncryptedText, default=None
    )
    requested_by_member_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None] = mapped_column(default=None)
    code_received_at: Mapped[datetime | None] = mapped_column(default=None)

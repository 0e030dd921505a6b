"""What the PagerDuty client returns: small frozen records, UTC times, no secrets in ``repr``.

The records carry only what the sync needs, in one shape for v2 and v3 schedules. They are
parsed defensively from PagerDuty's JSON (``workers.pagerduty.parsing``), because PagerDuty's
real answers differ from its schema in places (docs/simulator.md, fidelity table).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

CredentialKind = Literal["api_key", "oauth"]
ScheduleVersion = Literal["v2", "v3"]


@dataclass(frozen=True)
class Credential:
    """A PagerDuty secret and how to present it. ``repr`` and ``str`` never show the secret."""

    kind: CredentialKind
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("api_key", "oauth"):
            raise ValueError("Credential.kind must be 'api_key' or 'oauth'")
        if not self.secret or not self.secret.strip():
            raise ValueError("Credential.secret is empty")

    @property
    def fingerprint(self) -> str:
        """Short, stable, non-reversible id for rate-limit keys and logs."""
        return hashlib.sha256(f"{self.kind}:{self.secret}".encode()).hexdigest()[:16]

    @property
    def authorization(self) -> str:
        # Chosen from the stored kind only: a token's shape says nothing reliable about it.
        if self.kind == "api_key":
            return f"Token token={self.secret}"
        return f"Bearer {self.secret}"

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, fingerprint={self.fingerprint!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class User:
    """A PagerDuty user. ``active`` is False for a deleted user that schedules still name."""

    id: str
    name: str
    email: str | None
    time_zone: str | None = None
    role: str | None = None
    active: bool = True


@dataclass(frozen=True)
class UserRef:
    """A user as a schedule or an on-call entry names them (id and display name only).

    ``deleted`` is True when PagerDuty marked the reference as a deleted user's placeholder
    (``deleted_at`` set); a deleted user may also just be missing from ``GET /users``.
    """

    id: str
    name: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class ProbeResult:
    """The credential works. Rate-limit headers are None when PagerDuty didn't send them."""

    ratelimit_limit: int | None
    ratelimit_remaining: int | None
    html_url: str | None = None  # of the first user, which names the account's subdomain


@dataclass(frozen=True)
class UsersPage:
    users: tuple[User, ...]
    more: bool
    total: int | None  # None unless PagerDuty honoured total=true


@dataclass(frozen=True)
class Schedule:
    """One schedule from the directory (the v2 list, or a v3 list entry completed by its detail).

    ``escalation_policy_ids`` is None when the source did not say (v3 list entries); an empty
    tuple means no escalation policy uses the schedule, so ``/oncalls`` never shows it.
    """

    id: str
    name: str
    version: ScheduleVersion
    time_zone: str | None
    members: tuple[UserRef, ...] = ()
    escalation_policy_ids: tuple[str, ...] | None = None

    @property
    def member_user_ids(self) -> tuple[str, ...]:
        return dedupe(m.id for m in self.members)


@dataclass(frozen=True)
class V3ScheduleRef:
    id: str
    name: str


@dataclass(frozen=True)
class Shift:
    """Someone on call for a schedule over [start, end); ``end`` None: the shift does not end."""

    schedule_id: str
    user: UserRef
    start: datetime | None
    end: datetime | None

    def covers(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (
            self.end is None or moment < self.end
        )


@dataclass(frozen=True)
class Timeline:
    """Who is on call for one schedule over [since, until), as PagerDuty rendered it.

    ``members`` and ``users`` come with the detail read that produced the timeline (a v2
    schedule's ``users``; a v3 schedule's rotation members and ``include[]=users``).
    """

    schedule_id: str
    since: datetime
    until: datetime
    shifts: tuple[Shift, ...]
    members: tuple[UserRef, ...] = ()
    name: str | None = None
    time_zone: str | None = None

    def on_call_at(self, moment: datetime) -> tuple[UserRef, ...]:
        """Everyone on call at ``moment``; overlapping v3 assignments give several people."""
        seen: dict[str, UserRef] = {}
        for shift in self.shifts:
            if shift.covers(moment):
                seen.setdefault(shift.user.id, shift.user)
        return tuple(seen.values())


def dedupe(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))

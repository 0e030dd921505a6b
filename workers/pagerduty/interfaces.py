"""The PagerDuty reads and the OAuth calls the domain logic needs, as interfaces.

``PagerDutyClient`` implements the reads over HTTP, ``OAuthClient`` (workers.pagerduty.
oauth_client) the token endpoint and the id_token check; tests may pass any object with these
methods (in-process fakes built on the simulator's state: tests/support/fake_pagerduty.py,
tests/support/fake_oauth.py), so the snapshot, sync, login and refresh logic can be tested
without sockets or worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from workers.pagerduty.records import (
    ProbeResult,
    Schedule,
    Shift,
    Timeline,
    User,
    UsersPage,
    V3ScheduleRef,
)

if TYPE_CHECKING:  # authlib and joserfc load with the OAuth code, not with every reader
    from workers.pagerduty.id_token import IdTokenClaims
    from workers.pagerduty.oauth import TokenSet


class PagerDutyReader(Protocol):
    """Read-only PagerDuty operations for one credential. Errors: ``workers.pagerduty.errors``."""

    @property
    def requests_made(self) -> int: ...

    @property
    def requests_by_endpoint(self) -> Mapping[str, int]: ...

    @property
    def rate_limited_by_endpoint(self) -> Mapping[str, int]: ...

    def probe(self) -> ProbeResult: ...

    def me(self) -> User | None: ...

    def key_level(self) -> Literal["account", "user"]: ...

    def users_page(
        self, *, offset: int = 0, limit: int = 100, total: bool = False
    ) -> UsersPage: ...

    def list_users(self, *, offset: int = 0) -> list[User]: ...

    def get_user(self, user_id: str) -> User | None: ...

    def schedule_users(self, schedule_id: str) -> list[User]: ...

    def list_schedules(self) -> list[Schedule]: ...

    def list_v3_schedule_refs(self) -> list[V3ScheduleRef]: ...

    def schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline: ...

    def v3_schedule_timeline(
        self, schedule_id: str, since: datetime, until: datetime
    ) -> Timeline: ...

    def oncalls(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> tuple[list[Shift], dict[str, User]]: ...


class PagerDutyOAuth(Protocol):
    """PagerDuty's identity host for one OAuth app (its client id and secret).

    No ``revoke``: PagerDuty documents no revocation endpoint (workers.pagerduty.oauth).
    Errors: ``InvalidGrant`` (code or refresh token refused), ``InvalidClient``, ``OAuthError``,
    ``Transient`` / ``RateLimited`` (no answer, after short retries), ``IdTokenInvalid``. No
    code, verifier, token or secret is ever in their words.
    """

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> TokenSet: ...

    def refresh(self, refresh_token: str) -> TokenSet: ...

    def verify_id_token(self, id_token: str) -> IdTokenClaims:
        """Checked against PagerDuty's signing keys (fetched: ``Transient`` when they do not
        come), its issuer, expiry and this app's client id."""
        ...

"""The PagerDuty reads the domain logic needs, as an interface.

``PagerDutyClient`` implements it over HTTP; tests may pass any object with these methods (an
in-process fake built on the simulator's state, for instance), so the snapshot and sync logic
can be tested without sockets or worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol

from workers.pagerduty.records import (
    ProbeResult,
    Schedule,
    Shift,
    Timeline,
    User,
    UsersPage,
    V3ScheduleRef,
)


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

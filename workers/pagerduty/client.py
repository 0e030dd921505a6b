"""Synchronous PagerDuty REST client used by the Celery tasks: one method per PagerDuty read.

Why synchronous: a prefork Celery worker runs one task per process, and the reads of one sync
mostly depend on each other. Where they do not (the pages after the first once the total is
known, schedule details, ``/oncalls`` chunks, referenced users) up to ``max_in_flight`` run at
once on threads over the same transport (``workers.pagerduty.concurrency``,
``workers.pagerduty.bulk``), paced by the shared limiter. Every process holds one pooled
``httpx.Client`` reused across tasks (``workers.pagerduty.transport``). See
docs/pagerduty-client.md.

Each method returns records (``workers.pagerduty.records``); how the reads combine into one sync
is ``workers.pagerduty.snapshot``. Where PagerDuty's real behaviour differs from its schema the
methods follow the behaviour (docs/simulator.md, fidelity table).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from workers.pagerduty import parsing
from workers.pagerduty.errors import BadRequest, NotFound, Transient
from workers.pagerduty.records import (
    ProbeResult,
    Schedule,
    Shift,
    Timeline,
    User,
    UserRef,
    UsersPage,
    V3ScheduleRef,
)
from workers.pagerduty.transport import (
    MAX_OFFSET_WINDOW,
    PAGE_LIMIT,
    V3_PAGE_LIMIT,
    Transport,
    int_header,
    page_offsets,
)

# Schedule ids per /oncalls request: 100, the facts file's cheapest poll. The rows still page
# completely (``paginate`` follows ``more``), so a bigger chunk never loses rows; it only saves
# the partly filled last page each chunk ends with. 100 ids of ~30 characters
# (``schedule_ids%5B%5D=PXXXXXX&``) make a ~3.3 KB URL, well under the 8 KB request line most
# servers and proxies accept (50 was chosen for a one-page answer, not for the URL).
ONCALLS_SCHEDULE_CHUNK = 100


class PagerDutyClient(Transport):
    """Reads users and schedules for one credential (implements ``PagerDutyReader``).

    Safe to share between threads: per-call state lives on the stack; only the request counters
    are shared, under a lock. Retries are bounded by ``max_retries`` and by ``retry_budget``
    seconds of sleeping per call; past either, the error is raised for the task to retry later.
    """

    def probe(self) -> ProbeResult:
        """Validate any credential kind with the cheapest read (GET /users?limit=1)."""
        body, response = self.get_with_response("GET /users", "/users", [("limit", "1")])
        users = body.get("users")
        first = users[0] if isinstance(users, list) and users else None
        html_url = first.get("html_url") if isinstance(first, dict) else None
        return ProbeResult(
            ratelimit_limit=int_header(response, "ratelimit-limit"),
            ratelimit_remaining=int_header(response, "ratelimit-remaining"),
            html_url=html_url if isinstance(html_url, str) else None,
        )

    def me(self) -> User | None:
        """The user a user-level key or OAuth token acts as; None for an account-level key
        (PagerDuty answers /users/me with 400 and a plain-string error for those)."""
        try:
            body = self.get_json("GET /users/me", "/users/me")
        except BadRequest:
            return None
        return parsing.user(body.get("user"))

    def key_level(self) -> Literal["account", "user"]:
        """'user' for user keys and OAuth tokens; 'account' when /users/me answers 400."""
        return "account" if self.me() is None else "user"

    # users

    def users_page(
        self, *, offset: int = 0, limit: int = PAGE_LIMIT, total: bool = False
    ) -> UsersPage:
        """One page of GET /users; ``total=True`` asks PagerDuty to count the account's users."""
        params = [("limit", str(limit)), ("offset", str(offset))]
        if total:
            params.append(("total", "true"))
        body = self.get_json("GET /users", "/users", params)
        items = body.get("users")
        if not isinstance(items, list):
            raise Transient(
                "PagerDuty's GET /users answer has no 'users' list", endpoint="GET /users"
            )
        raw_total = body.get("total")
        return UsersPage(
            users=tuple(u for u in map(parsing.user, items) if u is not None),
            more=bool(body.get("more")) and bool(items),
            total=raw_total
            if isinstance(raw_total, int) and not isinstance(raw_total, bool)
            else None,
        )

    def list_users(self, *, offset: int = 0) -> list[User]:
        """Every user from ``offset`` on; PaginationLimit past PagerDuty's 10,000-record window."""
        users: dict[str, User] = {}
        for item in self.paginate("GET /users", "/users", "users", offset=offset):
            user = parsing.user(item)
            if user is not None:
                users.setdefault(user.id, user)
        return list(users.values())

    def get_user(self, user_id: str) -> User | None:
        """One user, or None when PagerDuty no longer has them (deleted: 404)."""
        try:
            body = self.get_json("GET /users/{id}", f"/users/{parsing.path_segment(user_id)}")
        except NotFound:
            return None
        return parsing.user(body.get("user"))

    def schedule_users(self, schedule_id: str) -> list[User]:
        """Every user on a v2 schedule, as full user objects (email included).

        Without since/until PagerDuty lists all the schedule's users, not who is on call.
        """
        body = self.get_json(
            "GET /schedules/{id}/users",
            f"/schedules/{parsing.path_segment(schedule_id)}/users",
        )
        items = body.get("users")
        return [u for u in map(parsing.user, items if isinstance(items, list) else []) if u]

    # schedules

    def list_schedules(self) -> list[Schedule]:
        """Every v2 schedule with its members and escalation policies (no on-call: the list
        never renders it, whatever ``include[]`` asks)."""
        schedules: dict[str, Schedule] = {}
        for item in self.collect("GET /schedules", "/schedules", "schedules"):
            schedule = parsing.v2_schedule(item)
            if schedule is not None:
                schedules.setdefault(schedule.id, schedule)
        return list(schedules.values())

    def list_v3_schedule_refs(self) -> list[V3ScheduleRef]:
        refs: dict[str, V3ScheduleRef] = {}
        for item in self.paginate(
            "GET /v3/schedules", "/v3/schedules", "schedules", limit=V3_PAGE_LIMIT
        ):
            schedule_id = parsing.ref_id(item)
            if schedule_id:
                name = parsing.text(item, "summary", "name") or schedule_id
                refs.setdefault(schedule_id, V3ScheduleRef(id=schedule_id, name=name))
        return list(refs.values())

    def schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        """Who is on call for a v2 schedule over [since, until), overrides included.

        PagerDuty's own recipe: ``GET /schedules/{id}?since&until`` and read
        ``final_schedule.rendered_schedule_entries``; without since/until it renders nothing.
        ``overflow=true`` asks for true shift ends rather than ends cut at ``until``.
        """
        since, until = _window(since, until)
        endpoint = "GET /schedules/{id}"
        body = self.get_json(
            endpoint,
            f"/schedules/{parsing.path_segment(schedule_id)}",
            [
                ("since", parsing.iso(since)),
                ("until", parsing.iso(until)),
                ("time_zone", "UTC"),
                ("overflow", "true"),
            ],
        )
        data = _entity(body, "schedule", endpoint)
        final = data.get("final_schedule")
        entries = final.get("rendered_schedule_entries") if isinstance(final, dict) else None
        return Timeline(
            schedule_id=schedule_id,
            since=since,
            until=until,
            shifts=parsing.rendered_shifts(schedule_id, entries),
            members=parsing.user_refs(data.get("users")),
            name=parsing.text(data, "name", "summary"),
            time_zone=parsing.text(data, "time_zone"),
        )

    def v3_schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        """A v3 schedule's computed shift assignments over [since, until), and its members.

        Members are the users its rotations name, plus ``include[]=users`` when PagerDuty
        renders it; assignments may overlap (several people on call at once).
        """
        since, until = _window(since, until)
        endpoint = "GET /v3/schedules/{id}"
        body = self.get_json(
            endpoint,
            f"/v3/schedules/{parsing.path_segment(schedule_id)}",
            [
                ("include[]", "final_schedule"),
                ("include[]", "users"),
                ("since", parsing.iso(since)),
                ("until", parsing.iso(until)),
                ("time_zone", "UTC"),
                ("overflow", "true"),
            ],
        )
        data = _entity(body, "schedule", endpoint)
        final = data.get("final_schedule")
        raw = final.get("computed_shift_assignments") if isinstance(final, dict) else None
        shifts = parsing.v3_shifts(schedule_id, raw)
        members: dict[str, UserRef] = {}
        for ref in (
            *parsing.v3_rotation_members(data.get("rotations")),
            *parsing.user_refs(data.get("users")),
            *(s.user for s in shifts),
        ):
            members.setdefault(ref.id, ref)
        return Timeline(
            schedule_id=schedule_id,
            since=since,
            until=until,
            shifts=shifts,
            members=tuple(members.values()),
            name=parsing.text(data, "name", "summary"),
            time_zone=parsing.text(data, "time_zone"),
        )

    def oncalls(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> tuple[list[Shift], dict[str, User]]:
        """Who is on call over [since, until) for these schedules, batched through /oncalls.

        ``/oncalls`` is computed per escalation policy: a schedule no policy uses is absent, and
        one used at several levels repeats (deduplicated here). ``include[]=users`` embeds full
        users, so on-call people need no lookup of their own. Permanent on-calls (``schedule``
        null) are not schedule shifts and are skipped.
        """
        shifts, users, _rows = self.oncalls_counted([schedule_ids], since, until)
        return shifts, users

    def oncalls_counted(
        self, batches: Sequence[Sequence[str]], since: datetime, until: datetime
    ) -> tuple[list[Shift], dict[str, User], dict[str, int]]:
        """``oncalls`` with the schedules asked in these batches (each split at 100 ids), and
        how many rows each schedule had at ``since`` (repeats included): what its next batch
        of a one-second window will cost (workers.pagerduty.window.pack)."""
        since, until = _window(since, until)
        shifts: dict[tuple[str, str, datetime | None, datetime | None], Shift] = {}
        users: dict[str, User] = {}
        chunks = [
            wanted[i : i + ONCALLS_SCHEDULE_CHUNK]
            for batch in batches
            if (wanted := list(dict.fromkeys(batch)))
            for i in range(0, len(wanted), ONCALLS_SCHEDULE_CHUNK)
        ]
        rows = {sid: 0 for chunk in chunks for sid in chunk}
        # Chunks are independent reads: in flight together, merged in chunk order.
        for chunk, items in zip(
            chunks,
            self.map_all(lambda c: self._oncalls_chunk(c, since, until), chunks),
            strict=True,
        ):
            for item in items:
                sid = parsing.ref_id(item.get("schedule"))
                if sid is None or sid not in chunk:
                    continue
                raw_user = item.get("user")
                ref = parsing.user_ref(raw_user)
                if ref is None:
                    continue
                full = parsing.user(raw_user)
                if full is not None and full.email:
                    users.setdefault(full.id, full)
                start, end = (
                    parsing.parse_time(item.get("start")),
                    parsing.parse_time(item.get("end")),
                )
                shift = shifts.setdefault((sid, ref.id, start, end), Shift(sid, ref, start, end))
                rows[sid] += shift.covers(since)
        return list(shifts.values()), users, rows

    def collect(
        self,
        endpoint: str,
        path: str,
        collection: str,
        params: list[tuple[str, str]] | None = None,
        *,
        limit: int = PAGE_LIMIT,
    ) -> list[dict[str, Any]]:
        """Every item of an offset-paginated list, the pages after the first concurrently.

        The first page asks ``total=true``; with a total inside PagerDuty's 10,000-record
        window the remaining offsets are known and read at once. A short page, a gap or a
        total that grew meanwhile falls back to the sequential walk from where the pages stop
        being contiguous, so nothing is skipped; without a total (PagerDuty may ignore it) or
        past the window it is the sequential walk, which raises PaginationLimit at the cap.
        """
        first, more, total = self._page(endpoint, path, collection, params, 0, limit, True)
        items = list(first)
        if not more:
            return items
        if not first:
            raise Transient(
                f"PagerDuty's {endpoint} said more=true but sent an empty page", endpoint=endpoint
            )
        offset = len(first)
        if total is None or total > MAX_OFFSET_WINDOW:
            return items + list(self.paginate(endpoint, path, collection, params, offset=offset))
        pages = page_offsets(offset, total, limit)
        got = self.map_all(
            lambda p: self._page(endpoint, path, collection, params, p[0], p[1], False), pages
        )
        for (page_offset, _), (page_items, page_more, _) in zip(pages, got, strict=True):
            if page_offset != offset:
                break  # the page before came short: walk on from where it stopped
            items.extend(page_items)
            offset += len(page_items)
            if not page_more:
                return items
            if not page_items:
                raise Transient(
                    f"PagerDuty's {endpoint} said more=true but sent an empty page",
                    endpoint=endpoint,
                )
        return items + list(self.paginate(endpoint, path, collection, params, offset=offset))

    def _page(
        self,
        endpoint: str,
        path: str,
        collection: str,
        params: list[tuple[str, str]] | None,
        offset: int,
        limit: int,
        want_total: bool,
    ) -> tuple[list[dict[str, Any]], bool, int | None]:
        query = [*(params or []), ("limit", str(limit)), ("offset", str(offset))]
        if want_total:
            query.append(("total", "true"))
        page = self.get_json(endpoint, path, query)
        items = page.get(collection)
        if not isinstance(items, list):
            raise Transient(
                f"PagerDuty's {endpoint} answer has no '{collection}' list", endpoint=endpoint
            )
        total = page.get("total")
        return (
            [i for i in items if isinstance(i, dict)],
            bool(page.get("more")),
            total if isinstance(total, int) and not isinstance(total, bool) else None,
        )

    def _oncalls_chunk(
        self, chunk: Sequence[str], since: datetime, until: datetime
    ) -> list[dict[str, Any]]:
        params = [
            *(("schedule_ids[]", sid) for sid in chunk),
            ("include[]", "users"),
            ("since", parsing.iso(since)),
            ("until", parsing.iso(until)),
            ("time_zone", "UTC"),
        ]
        return list(self.paginate("GET /oncalls", "/oncalls", "oncalls", params, scope="oncalls"))


def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    since, until = parsing.whole_second(since), parsing.whole_second(until)
    if until <= since:
        raise ValueError("until must be at least one second after since")
    return since, until


def _entity(body: dict[str, Any], key: str, endpoint: str) -> dict[str, Any]:
    data = body.get(key)
    if not isinstance(data, dict):
        raise Transient(f"PagerDuty's {endpoint} answer has no '{key}' object", endpoint=endpoint)
    return data

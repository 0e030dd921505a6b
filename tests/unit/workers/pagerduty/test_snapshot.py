"""How one sync's reads combine (``read_snapshot``), against a scripted reader: no sockets.

Each test states what PagerDuty answers and checks what the sync would learn and which requests
it would make: the fallbacks PagerDuty's real behaviour needs are the point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workers.pagerduty.errors import (
    BadRequest,
    Forbidden,
    NoApiAccess,
    NotFound,
    PaginationLimit,
)
from workers.pagerduty.records import (
    Schedule,
    Shift,
    Timeline,
    User,
    UserRef,
    UsersPage,
    V3ScheduleRef,
)
from workers.pagerduty.snapshot import read_check, read_snapshot
from workers.pagerduty.window import CHECK_WINDOW, pack, stale

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _user(uid: str) -> User:
    return User(uid, uid.title(), f"{uid.lower()}@example.com")


@dataclass
class ScriptedReader:
    """A PagerDuty account as the reads see it. ``fail`` maps a method to the error it raises."""

    users: list[User] = field(default_factory=list)
    total: int | None = None  # what GET /users?total=true says (None: PagerDuty ignored it)
    schedules: list[Schedule] = field(default_factory=list)
    v3: dict[str, Timeline] = field(default_factory=dict)
    shifts: dict[str, list[Shift]] = field(default_factory=dict)  # what /oncalls shows
    details: dict[str, Timeline] = field(default_factory=dict)  # GET /schedules/{id}
    schedule_members: dict[str, list[User]] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    # (request, schedule ids, window length) of every on-call read, in order.
    windows: list[tuple[str, tuple[str, ...], timedelta]] = field(default_factory=list)

    @property
    def requests_made(self) -> int:
        return sum(self.calls.values())

    @property
    def requests_by_endpoint(self) -> dict[str, int]:
        return dict(self.calls)

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.fail:
            raise self.fail[name]

    def probe(self) -> Any:
        raise NotImplementedError

    def key_level(self) -> Any:
        raise NotImplementedError

    def users_page(self, *, offset: int = 0, limit: int = 100, total: bool = False) -> UsersPage:
        self._call("users_page")
        page = self.users[offset : offset + limit]
        return UsersPage(tuple(page), offset + len(page) < len(self.users), self.total)

    def list_users(self, *, offset: int = 0) -> list[User]:
        self._call("list_users")
        if len(self.users) > 10_000:
            raise PaginationLimit("too many", fetched=10_000)
        return self.users[offset:]

    def get_user(self, user_id: str) -> User | None:
        self._call("get_user")
        return next((u for u in self.users if u.id == user_id), None)

    def schedule_users(self, schedule_id: str) -> list[User]:
        self._call("schedule_users")
        return self.schedule_members.get(schedule_id, [])

    def list_schedules(self) -> list[Schedule]:
        self._call("list_schedules")
        return list(self.schedules)

    def list_v3_schedule_refs(self) -> list[V3ScheduleRef]:
        self._call("list_v3")
        return [V3ScheduleRef(sid, t.name or sid) for sid, t in self.v3.items()]

    def schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        self._call("schedule_timeline")
        self.windows.append(("schedule_timeline", (schedule_id,), until - since))
        if schedule_id not in self.details:
            raise NotFound("gone", status=404)
        return self.details[schedule_id]

    def v3_schedule_timeline(self, schedule_id: str, since: datetime, until: datetime) -> Timeline:
        self._call("v3_detail")
        self.windows.append(("v3_detail", (schedule_id,), until - since))
        return self.v3[schedule_id]

    def oncalls(
        self, schedule_ids: Sequence[str], since: datetime, until: datetime
    ) -> tuple[list[Shift], dict[str, User]]:
        self._call("oncalls")
        self.windows.append(("oncalls", tuple(schedule_ids), until - since))
        found = [
            s
            for sid in schedule_ids
            for s in self.shifts.get(sid, [])
            if (s.start is None or s.start < until) and (s.end is None or since < s.end)
        ]
        return found, {}


def _shift(sid: str, uid: str, deleted: bool = False) -> Shift:
    return Shift(
        sid, UserRef(uid, deleted=deleted), NOW - timedelta(hours=1), NOW + timedelta(hours=2)
    )


def _v2(sid: str, members: Sequence[str], policies: tuple[str, ...] | None = ("PE1",)) -> Schedule:
    return Schedule(sid, sid, "v2", "UTC", tuple(UserRef(m) for m in members), policies)


def test_on_call_comes_from_oncalls_with_the_detail_for_what_it_cannot_show() -> None:
    reader = ScriptedReader(
        users=[_user("PA"), _user("PB"), _user("PC")],
        schedules=[
            _v2("PS1", ["PA", "PB"]),
            _v2("PS2", ["PB"]),  # in a policy, but nobody on call now: absent from /oncalls
            _v2("PS3", ["PC"], policies=()),  # no escalation policy: never in /oncalls
            _v2("PS4", ["PA"]),  # not bound: its on-call is never read
        ],
        shifts={"PS1": [_shift("PS1", "PA")], "PS4": [_shift("PS4", "PA")]},
        details={
            "PS2": Timeline("PS2", NOW, NOW + timedelta(hours=6), ()),
            "PS3": Timeline("PS3", NOW, NOW + timedelta(hours=6), (_shift("PS3", "PC"),)),
        },
    )
    snap = read_snapshot(reader, bound={"PS1", "PS2", "PS3"}, now=NOW)

    assert [u.id for u in snap.on_call("PS1")] == ["PA"]
    assert snap.on_call("PS2") == ()
    assert [u.id for u in snap.on_call("PS3")] == ["PC"]
    assert "PS4" not in snap.timelines
    # users + schedules + v3 list + one /oncalls + two details.
    assert reader.calls == Counter(
        users_page=1, list_schedules=1, list_v3=1, oncalls=1, schedule_timeline=2
    )
    assert snap.requests_made == 6
    assert snap.users_complete


@pytest.mark.parametrize(
    "error",
    [Forbidden("no oncalls.read", status=403), NoApiAccess("ability", status=402)],
    ids=["403", "402"],
)
def test_oncalls_refused_falls_back_to_one_detail_per_bound_schedule(error: Exception) -> None:
    reader = ScriptedReader(
        users=[_user("PA")],
        schedules=[_v2("PS1", ["PA"]), _v2("PS2", ["PA"])],
        details={
            sid: Timeline(sid, NOW, NOW + timedelta(hours=6), (_shift(sid, "PA"),))
            for sid in ("PS1", "PS2")
        },
        fail={"oncalls": error},
    )
    snap = read_snapshot(reader, bound={"PS1", "PS2"}, now=NOW)
    assert {sid: [u.id for u in snap.on_call(sid)] for sid in ("PS1", "PS2")} == {
        "PS1": ["PA"],
        "PS2": ["PA"],
    }
    assert reader.calls["schedule_timeline"] == 2


def test_without_oncalls_every_bound_schedule_is_read_from_its_detail() -> None:
    reader = ScriptedReader(
        users=[_user("PA")],
        schedules=[_v2("PS1", ["PA"])],
        details={"PS1": Timeline("PS1", NOW, NOW + timedelta(hours=6), (_shift("PS1", "PA"),))},
    )
    snap = read_snapshot(reader, bound={"PS1"}, now=NOW, use_oncalls=False)
    assert [u.id for u in snap.on_call("PS1")] == ["PA"]
    assert "oncalls" not in reader.calls


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("not upgraded", status=400),
        NoApiAccess("ability", status=402),
        Forbidden("scope", status=403),
    ],
    ids=["400", "402", "403"],
)
def test_v3_refused_keeps_v2_syncing_and_says_so(error: Exception) -> None:
    reader = ScriptedReader(
        users=[_user("PA")],
        schedules=[_v2("PS1", ["PA"])],
        shifts={"PS1": [_shift("PS1", "PA")]},
        fail={"list_v3": error},
    )
    snap = read_snapshot(reader, bound={"PS1", "PV3"}, now=NOW)
    assert not snap.v3_listed
    assert [u.id for u in snap.on_call("PS1")] == ["PA"]
    [notice] = snap.notices
    assert "shift-based (v3)" in notice
    assert f"HTTP {error.status}" in notice
    assert "layer-based schedules keep syncing" in notice


def test_a_bound_schedule_that_vanished_is_unreadable_not_a_failure() -> None:
    reader = ScriptedReader(
        users=[_user("PA")],
        schedules=[_v2("PS1", ["PA"], policies=())],
    )
    snap = read_snapshot(reader, bound={"PS1"}, now=NOW)
    assert "no longer exists" in snap.unreadable["PS1"]
    assert "PS1" not in snap.timelines


def test_deleted_users_on_schedules_become_inactive_placeholders() -> None:
    reader = ScriptedReader(
        users=[_user("PA")],
        schedules=[Schedule("PS1", "P", "v2", "UTC", (UserRef("PA"), UserRef("PGONE", "Gone")))],
        shifts={"PS1": [_shift("PS1", "PGONE")]},
    )
    snap = read_snapshot(reader, bound={"PS1"}, now=NOW)
    users = {u.id: u for u in snap.users}
    assert users["PA"].active
    assert (users["PGONE"].active, users["PGONE"].name, users["PGONE"].email) == (
        False,
        "Gone",
        None,
    )
    assert [u.id for u in snap.on_call("PS1")] == ["PGONE"]


def test_past_10000_users_only_referenced_users_are_read() -> None:
    """25,000 users: GET /users cannot list them (offset + limit > 10000 answers 400), so the
    first page's total decides, and only the bound schedule's people are read."""
    users = [_user(f"P{i:05d}") for i in range(25_000)]
    by_id = {u.id: u for u in users}
    gone = UserRef("PGONE")
    reader = ScriptedReader(
        users=users,
        total=25_000,
        schedules=[
            Schedule("PS1", "P", "v2", "UTC", (UserRef("P20000"), UserRef("P20001"), gone)),
            _v2("PS2", ["P00005"]),  # not bound
        ],
        # An override puts someone on call who is on no layer.
        shifts={"PS1": [_shift("PS1", "P24999")]},
        schedule_members={"PS1": [by_id["P20000"], by_id["P20001"]]},
    )
    snap = read_snapshot(reader, bound={"PS1"}, now=NOW)

    assert not snap.users_complete
    known = {u.id: u for u in snap.users}
    assert {"P20000", "P20001", "P24999"} <= known.keys()
    assert known["P24999"].email == "p24999@example.com"
    assert known["PGONE"].active is False  # /users/{id} answered 404
    assert "list_users" not in reader.calls
    # One users page, one /schedules/{id}/users, two single-user reads (override + deleted).
    assert (reader.calls["users_page"], reader.calls["schedule_users"]) == (1, 1)
    assert reader.calls["get_user"] == 2
    assert len(known) < 200  # nowhere near the account's 25,000


def test_when_pagerduty_ignores_total_the_cap_itself_switches_to_referenced_users() -> None:
    users = [_user(f"P{i:05d}") for i in range(10_050)]
    reader = ScriptedReader(
        users=users,
        total=None,
        schedules=[_v2("PS1", ["P10049"])],
        shifts={"PS1": [_shift("PS1", "P10049")]},
        schedule_members={"PS1": [users[-1]]},
    )
    snap = read_snapshot(reader, bound={"PS1"}, now=NOW)
    assert not snap.users_complete
    assert "P10049" in {u.id for u in snap.users}
    assert reader.calls["list_users"] == 1


# --- the on-call check (``read_check``): what is read every interval ------------------------


def _v3(sid: str, members: Sequence[str]) -> Schedule:
    # As the mirror knows a v3 schedule: no escalation policies (it does not keep them).
    return Schedule(sid, sid, "v3", "UTC", tuple(UserRef(m) for m in members))


def _timeline(sid: str, *uids: str) -> Timeline:
    return Timeline(sid, NOW, NOW + timedelta(hours=6), tuple(_shift(sid, u) for u in uids))


def test_a_check_reads_v2_and_v3_on_call_from_one_oncalls_request() -> None:
    reader = ScriptedReader(
        shifts={"PS1": [_shift("PS1", "PA")], "PV1": [_shift("PV1", "PB"), _shift("PV1", "PC")]},
        v3={"PV1": _timeline("PV1", "PA")},  # never asked: /oncalls answered
    )
    known = [_v2("PS1", ["PA", "PB"], policies=None), _v3("PV1", ["PB", "PC"])]

    snap = read_check(reader, known=known, now=NOW)

    assert reader.calls == Counter(oncalls=1)  # no schedule list, no users, no v3 detail
    assert [u.id for u in snap.on_call("PS1")] == ["PA"]
    assert {u.id for u in snap.on_call("PV1")} == {"PB", "PC"}
    # Members are the mirror's (the directory cadence reads them), not read again.
    assert {s.id: s.member_user_ids for s in snap.schedules} == {
        "PS1": ("PA", "PB"),
        "PV1": ("PB", "PC"),
    }
    assert not snap.directory_read
    assert not snap.users_read


def test_a_check_reads_a_detail_only_where_oncalls_cannot_answer() -> None:
    """Absent from /oncalls: no policy uses it, nobody is on call, or /oncalls left a v3
    schedule out after all (facts file: unverified either way): its detail, by version."""
    reader = ScriptedReader(
        shifts={"PS1": [_shift("PS1", "PA")]},
        details={"PS2": _timeline("PS2", "PB")},
        v3={"PV1": _timeline("PV1", "PC")},
    )
    known = [_v2("PS1", ["PA"], None), _v2("PS2", ["PB"], None), _v3("PV1", ["PC"])]

    snap = read_check(reader, known=known, now=NOW)

    assert reader.calls == Counter(oncalls=1, schedule_timeline=1, v3_detail=1)
    assert {sid: [u.id for u in snap.on_call(sid)] for sid in ("PS1", "PS2", "PV1")} == {
        "PS1": ["PA"],
        "PS2": ["PB"],
        "PV1": ["PC"],
    }


@pytest.mark.parametrize(
    "error",
    [Forbidden("no oncalls.read", status=403), NoApiAccess("ability", status=402)],
    ids=["403", "402"],
)
def test_a_check_with_oncalls_refused_reads_each_detail(error: Exception) -> None:
    reader = ScriptedReader(
        details={"PS1": _timeline("PS1", "PA")},
        v3={"PV1": _timeline("PV1", "PB")},
        fail={"oncalls": error},
    )
    snap = read_check(reader, known=[_v2("PS1", ["PA"], None), _v3("PV1", ["PB"])], now=NOW)
    assert reader.calls == Counter(oncalls=1, schedule_timeline=1, v3_detail=1)
    assert [u.id for u in snap.on_call("PV1")] == ["PB"]


def test_a_check_leaves_out_a_schedule_whose_detail_is_gone() -> None:
    """404: gone, or now the other version; the caller reads the directory, which says which."""
    reader = ScriptedReader(details={})
    snap = read_check(reader, known=[_v2("PS1", ["PA"], None)], now=NOW)
    assert snap.schedules == ()
    assert not snap.unreadable


def test_a_directory_read_without_the_user_directory_reads_only_new_people() -> None:
    """Between daily listings: no GET /users pages; GET /users/{id} for a bound schedule's
    person the mirror lacks, or has as active though PagerDuty now says deleted."""
    reader = ScriptedReader(
        users=[_user("PA"), _user("PNEW")],
        schedules=[_v2("PS1", ["PA", "PGONE"]), _v2("PS9", ["PUNBOUND"])],
        shifts={"PS1": [_shift("PS1", "PNEW")]},
    )
    reader.schedules[0] = Schedule(
        "PS1", "PS1", "v2", "UTC", (UserRef("PA"), UserRef("PGONE", deleted=True)), ("PE1",)
    )
    asked: list[list[str]] = []

    def known(ids: Any) -> dict[str, bool]:
        asked.append(sorted(ids))
        return {"PA": True, "PGONE": True}

    snap = read_snapshot(reader, bound={"PS1"}, now=NOW, read_users=False, known_users=known)

    assert "users_page" not in reader.calls
    assert "list_users" not in reader.calls
    assert reader.calls["get_user"] == 2  # PNEW (new) and PGONE (deleted since)
    by_id = {u.id: u for u in snap.users}
    assert set(by_id) == {"PNEW", "PGONE"}  # PA stays as the mirror has it
    assert by_id["PNEW"].email == "pnew@example.com"
    assert not by_id["PGONE"].active
    assert asked == [["PA", "PGONE", "PNEW"]]
    assert not snap.users_read
    assert snap.directory_read


# --- the check reads "now"; the handoff window on the directory cadence (window.py) ----------

H = timedelta(hours=1)
WINDOW = 6 * H


def _account() -> ScriptedReader:
    """PS1 (v2): Ann until NOW+2h, then Bob; PV1 (v3): Bob; both in a policy (in /oncalls)."""
    return ScriptedReader(
        users=[_user("PA"), _user("PB")],
        schedules=[_v2("PS1", ["PA", "PB"])],
        shifts={
            "PS1": [
                Shift("PS1", UserRef("PA"), NOW - H, NOW + 2 * H),
                Shift("PS1", UserRef("PB"), NOW + 2 * H, NOW + 8 * H),
            ],
            "PV1": [Shift("PV1", UserRef("PB"), NOW - H, NOW + 8 * H)],
        },
        v3={"PV1": _timeline("PV1", "PB")},
    )


KNOWN = [_v2("PS1", ["PA", "PB"]), _v3("PV1", ["PB"])]


class Stored:
    """The stored timeline's answer, and what the check asked it."""

    def __init__(self, answer: dict[str, frozenset[str]]) -> None:
        self.answer = answer
        self.asked: list[tuple[list[str], datetime]] = []

    def __call__(self, ids: Collection[str], at: datetime) -> dict[str, frozenset[str]]:
        self.asked.append((sorted(ids), at))
        return {sid: self.answer[sid] for sid in ids if sid in self.answer}


def test_a_quiet_check_asks_oncalls_about_one_second_and_keeps_the_stored_timeline() -> None:
    reader = _account()
    stored = Stored({"PS1": frozenset({"PA"}), "PV1": frozenset({"PB"})})

    snap = read_check(reader, known=KNOWN, now=NOW, stored=stored)

    assert reader.windows == [("oncalls", ("PS1", "PV1"), CHECK_WINDOW)]
    assert stored.asked == [(["PS1", "PV1"], NOW)]
    assert snap.confirmed == {"PS1", "PV1"}  # apply keeps their on-call and handoff plan
    assert {sid: [u.id for u in snap.on_call(sid)] for sid in ("PS1", "PV1")} == {
        "PS1": ["PA"],
        "PV1": ["PB"],
    }


def test_on_call_now_other_than_stored_reads_that_schedules_window_again() -> None:
    """An override or an edit: the stored future is stale too, so the window is read again
    (one more /oncalls, for that schedule only) and re-planned like a directory read's."""
    reader = _account()
    stored = Stored({"PS1": frozenset({"PB"}), "PV1": frozenset({"PB"})})

    snap = read_check(reader, known=KNOWN, now=NOW, stored=stored)

    assert reader.windows == [
        ("oncalls", ("PS1", "PV1"), CHECK_WINDOW),
        ("oncalls", ("PS1",), WINDOW),
    ]
    assert snap.confirmed == {"PV1"}
    assert snap.timelines["PS1"].until == NOW + WINDOW
    assert [u.id for u in snap.on_call("PS1", NOW + 3 * H)] == ["PB"]  # the handoff, planned


def test_nobody_stored_for_a_schedule_means_nobody_on_call() -> None:
    reader = _account()
    stored = Stored({"PS1": frozenset({"PA"})})  # PV1: no mirror row, no due handoff

    snap = read_check(reader, known=KNOWN, now=NOW, stored=stored)

    assert snap.confirmed == {"PS1"}
    assert reader.windows[1:] == [("oncalls", ("PV1",), WINDOW)]


def test_a_detail_costs_one_request_whatever_its_window_so_it_reads_the_whole_one() -> None:
    """No policy uses PS2 (absent from /oncalls): its detail is the check's only way to see
    it, and is re-planned from as before; it is never compared with the stored timeline."""
    reader = _account()
    reader.details = {"PS2": Timeline("PS2", NOW, NOW + WINDOW, (_timeline("PS2", "PA").shifts))}
    known = [*KNOWN, _v2("PS2", ["PA"], policies=())]
    stored = Stored({"PS1": frozenset({"PA"}), "PV1": frozenset({"PB"})})

    snap = read_check(reader, known=known, now=NOW, stored=stored)

    assert reader.calls == Counter(oncalls=1, schedule_timeline=1)
    assert ("schedule_timeline", ("PS2",), WINDOW) in reader.windows
    assert stored.asked == [(["PS1", "PV1"], NOW)]
    assert snap.confirmed == {"PS1", "PV1"}


def test_a_schedule_whose_on_call_ended_now_is_read_from_its_detail() -> None:
    """Stored says Ann, PagerDuty now shows nobody for PS1 in /oncalls over now: PS1 is not
    in the answer, so its detail (the whole window) answers, as for any schedule it omits."""
    reader = _account()
    reader.shifts["PS1"] = []
    reader.details = {"PS1": Timeline("PS1", NOW, NOW + WINDOW, ())}
    stored = Stored({"PS1": frozenset({"PA"}), "PV1": frozenset({"PB"})})

    snap = read_check(reader, known=KNOWN, now=NOW, stored=stored)

    assert reader.windows[-1] == ("schedule_timeline", ("PS1",), WINDOW)
    assert snap.on_call("PS1") == ()
    assert snap.confirmed == {"PV1"}


def test_without_the_stored_timeline_the_check_reads_the_whole_window() -> None:
    reader = _account()
    snap = read_check(reader, known=KNOWN, now=NOW)
    assert reader.windows == [("oncalls", ("PS1", "PV1"), WINDOW)]
    assert snap.confirmed == frozenset()


def test_the_directory_read_reads_the_whole_window_for_every_bound_schedule() -> None:
    reader = _account()
    snap = read_snapshot(reader, bound={"PS1", "PV1"}, now=NOW)
    assert ("oncalls", ("PS1",), WINDOW) in reader.windows
    assert ("v3_detail", ("PV1",), WINDOW) in reader.windows
    assert snap.confirmed == frozenset()
    assert [u.id for u in snap.on_call("PS1", NOW + 3 * H)] == ["PB"]


def test_stale_compares_ids_the_mirror_can_hold() -> None:
    timelines = {
        "PS1": Timeline(
            "PS1", NOW, NOW + CHECK_WINDOW, (Shift("PS1", UserRef("X" * 65), NOW, None),)
        ),
        "PS2": _timeline("PS2", "PA", "PB"),
    }
    stored = {"PS2": frozenset({"PB", "PA"})}
    # An id longer than the mirror holds is never stored: PS1 then has "nobody", as stored.
    assert stale(timelines, ["PS1", "PS2"], stored, NOW) == []
    assert stale(timelines, ["PS2"], {"PS2": frozenset({"PA"})}, NOW) == ["PS2"]


def test_unbound_v3_details_wait_for_the_daily_read_bound_ones_do_not() -> None:
    """One detail per v3 schedule is its members: a bound one's are read on the directory
    cadence (900 s), an unbound one's with the user listing (daily, on demand) only; in between
    the mirror keeps them (``members_unknown``) and the schedule stays listed."""
    reader = ScriptedReader(
        v3={
            "PV1": _timeline("PV1", "PA"),
            "PV2": Timeline("PV2", NOW, NOW + WINDOW, (), members=(UserRef("PB"),), name="Two"),
        },
    )

    cadence = read_snapshot(reader, bound={"PV1"}, now=NOW, read_users=False)

    assert [w for w in reader.windows if w[0] == "v3_detail"] == [("v3_detail", ("PV1",), WINDOW)]
    assert {s.id for s in cadence.schedules} == {"PV1", "PV2"}
    assert cadence.members_unknown == {"PV2"}
    assert not cadence.unreadable

    reader.windows.clear()
    daily = read_snapshot(reader, bound={"PV1"}, now=NOW, read_users=True)

    assert sorted(w[1] for w in reader.windows if w[0] == "v3_detail") == [("PV1",), ("PV2",)]
    assert daily.members_unknown == frozenset()
    assert {s.id: s.member_user_ids for s in daily.schedules}["PV2"] == ("PB",)


def test_pack_fits_each_batch_s_expected_rows_in_one_page() -> None:
    """The large account's rows at an instant (bench_requests): 385 for 270 schedules, which
    batches of 100 ids take 6 pages to answer; packed by the counts, 4."""
    sizes = [1] * 179 + [2] * 71 + [3] * 17 + [4] * 2 + [5]
    rows = {f"P{i:03d}": n for i, n in enumerate(sizes)}

    batches = pack(sorted(rows), rows)

    assert len(batches) == 4
    assert all(sum(rows[s] for s in b) <= 100 and len(b) <= 100 for b in batches)
    assert sorted(s for b in batches for s in b) == sorted(rows)


def test_pack_counts_an_unknown_schedule_as_two_rows_and_caps_ids_at_100() -> None:
    assert [len(b) for b in pack([f"P{i:03d}" for i in range(120)], {})] == [50, 50, 20]
    zero = {f"P{i:03d}": 0 for i in range(150)}  # nobody on call last time: no rows
    assert [len(b) for b in pack(sorted(zero), zero)] == [100, 50]


def test_a_check_with_row_counts_packs_its_oncalls_batches_and_reports_them() -> None:
    reader = _account()
    batches: list[list[list[str]]] = []

    def counted(asked, since, until):  # type: ignore[no-untyped-def]
        batches.append([list(b) for b in asked])
        shifts, users = reader.oncalls([s for b in asked for s in b], since, until)
        rows = {s: sum(1 for x in shifts if x.schedule_id == s) for b in asked for s in b}
        return shifts, users, rows

    reader.oncalls_counted = counted  # type: ignore[attr-defined]
    stored = Stored({"PS1": frozenset({"PA"}), "PV1": frozenset({"PB"})})

    snap = read_check(reader, known=KNOWN, now=NOW, stored=stored, rows_hint={"PS1": 60, "PV1": 60})

    assert batches == [[["PS1"], ["PV1"]]]  # 120 rows expected: two batches
    assert snap.oncall_rows == {"PS1": 1, "PV1": 1}

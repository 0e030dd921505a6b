"""Scenario model and loader: the accounts, people, schedules and credentials a simulator serves.

A scenario is plain data (YAML/JSON file, dict, or objects built by `generator`). The loader turns
it into the dataclasses below and reports problems with a path to the offending field, so a typo
in a test fixture fails loudly instead of producing a quietly wrong PagerDuty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .clock import system_now
from .rrule import RRule, RRuleError, parse_rrule

SCENARIO_DIR = Path(__file__).parent / "scenarios"

ADMIN_ROLES = frozenset({"admin", "owner"})
USER_ROLES = frozenset(
    {
        "admin",
        "limited_user",
        "observer",
        "owner",
        "read_only_user",
        "restricted_access",
        "read_only_limited_user",
        "user",
    }
)
REGIONS = ("us", "eu")
V3_STRATEGIES = ("rotating_member_assignment_strategy", "every_member_assignment_strategy")
DEFAULT_ABILITIES = ["teams", "read_only_users", "service_support_hours", "urgencies"]
# Endpoints or parameters that need an account ability (402 without it). `team_ids[]` needs
# `teams` on every PagerDuty plan that lacks it (tidbyt/community#810); more gates are per scenario.
DEFAULT_REQUIRED_ABILITIES: dict[str, list[str]] = {"team_ids[]": ["teams"]}


class ScenarioError(ValueError):
    """A scenario could not be loaded; the message names the offending field."""


@dataclass
class User:
    id: str
    name: str
    email: str
    time_zone: str = "UTC"
    role: str = "user"
    job_title: str = ""
    color: str = "purple"
    teams: list[str] = field(default_factory=list)
    deleted_at: datetime | None = None  # set once deleted: an "inactive" placeholder

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    @property
    def is_restricted(self) -> bool:
        return self.role == "restricted_access"


@dataclass
class Restriction:
    type: str  # daily_restriction | weekly_restriction
    start_time_of_day: str  # "HH:MM:SS" in the schedule's time zone
    duration_seconds: int
    start_day_of_week: int | None = None  # 1 = Monday .. 7 = Sunday (weekly only)


@dataclass
class Layer:
    id: str
    name: str
    start: datetime
    rotation_virtual_start: datetime
    rotation_turn_length_seconds: int
    users: list[str]
    end: datetime | None = None
    restrictions: list[Restriction] = field(default_factory=list)


@dataclass
class Override:
    """v2: the user is on call for the span. v3: replaces `overridden_user_id` (or, when not
    given, whoever the target has) in the shifts of one rotation or custom shift."""

    id: str
    start: datetime
    end: datetime
    user_id: str | None  # the overriding member (None = empty_member, v3 only)
    rotation_id: str | None = None
    custom_shift_id: str | None = None
    overridden_user_id: str | None = None
    overridden_given: bool = False  # overridden_user_id (even None = empty_member) was named


@dataclass
class CustomShift:
    """A v3 one-off shift: one extra responder for [start, end)."""

    id: str
    start: datetime
    end: datetime
    user_id: str | None


@dataclass
class V3Event:
    id: str
    name: str
    start_time: datetime  # first occurrence, aware
    end_time: datetime
    rule: RRule | None  # None = a single occurrence
    strategy: str
    members: list[str | None]  # None = an empty_member slot
    shifts_per_member: int = 1
    effective_since: datetime | None = None
    effective_until: datetime | None = None

    @property
    def recurrence(self) -> list[str]:
        return [self.rule.text] if self.rule is not None else []

    @property
    def freq(self) -> str:
        return self.rule.freq if self.rule is not None else "NONE"


@dataclass
class Rotation:
    id: str
    events: list[V3Event]


@dataclass
class Schedule:
    id: str
    name: str
    time_zone: str = "UTC"
    description: str = ""
    layers: list[Layer] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    version: int = 2
    rotations: list[Rotation] = field(default_factory=list)
    restricted: bool = False
    teams: list[str] = field(default_factory=list)
    custom_shifts: list[CustomShift] = field(default_factory=list)

    def user_ids(self) -> list[str]:
        """Members in layer/rotation order, deduplicated (what PagerDuty lists as `users`)."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            for uid in layer.users:
                seen.setdefault(uid, None)
        for rot in self.rotations:
            for ev in rot.events:
                for uid in ev.members:
                    if uid is not None:
                        seen.setdefault(uid, None)
        return list(seen)


@dataclass
class Target:
    type: str  # schedule | user
    id: str


@dataclass
class EscalationPolicy:
    id: str
    name: str
    rules: list[list[Target]]  # escalation level N = rules[N-1]


@dataclass
class Team:
    id: str
    name: str


@dataclass
class Account:
    id: str
    name: str
    subdomain: str
    region: str = "us"
    api_access: bool = True
    abilities: list[str] = field(default_factory=lambda: list(DEFAULT_ABILITIES))
    time_zone: str = "UTC"
    users: dict[str, User] = field(default_factory=dict)
    # deleted users: gone from /users but still named by schedules and policies
    deleted_users: dict[str, User] = field(default_factory=dict)
    required_abilities: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_REQUIRED_ABILITIES.items()}
    )
    schedules: dict[str, Schedule] = field(default_factory=dict)
    escalation_policies: dict[str, EscalationPolicy] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)

    _policy_index: dict[str, list[EscalationPolicy]] | None = field(
        default=None, repr=False, compare=False
    )

    def policies_for_schedule(self, schedule_id: str) -> list[EscalationPolicy]:
        # reverse index built on first use: O(1) per schedule on large accounts
        if self._policy_index is None:
            index: dict[str, list[EscalationPolicy]] = {}
            for p in self.escalation_policies.values():
                for sid in dict.fromkeys(
                    t.id for rule in p.rules for t in rule if t.type == "schedule"
                ):
                    index.setdefault(sid, []).append(p)
            self._policy_index = index
        return self._policy_index.get(schedule_id, [])

    def invalidate(self) -> None:
        """Call after changing policies or schedules so derived indexes are rebuilt."""
        self._policy_index = None

    def any_user(self, uid: str | None) -> User | None:
        """An active user or a deleted user's placeholder."""
        if uid is None:
            return None
        return self.users.get(uid) or self.deleted_users.get(uid)


@dataclass
class ApiKey:
    label: str
    key: str
    account_id: str
    kind: str = "account"  # account | user
    user_id: str | None = None
    read_only: bool = True


@dataclass
class OAuthApp:
    label: str
    client_id: str
    client_secret: str
    account_id: str
    scopes: list[str]
    redirect_uris: list[str] = field(default_factory=list)
    authorize_as: str | None = None  # the user who clicks "Authorize" in auto-approve mode
    name: str = ""


@dataclass
class Scenario:
    accounts: dict[str, Account] = field(default_factory=dict)
    api_keys: list[ApiKey] = field(default_factory=list)
    oauth_apps: list[OAuthApp] = field(default_factory=list)
    name: str = "custom"


# --------------------------------------------------------------------------- parsing helpers

_REL_RE = re.compile(r"^now\s*(?:([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: Any, where: str, now: datetime) -> datetime:
    """ISO 8601 (naive = UTC) or a relative expression like `now`, `now-1h`, `now+2d`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        m = _REL_RE.match(value.strip())
        if m:
            if not m.group(1):
                return now
            delta = float(m.group(2)) * _UNIT[m.group(3)]
            return now + timedelta(seconds=delta if m.group(1) == "+" else -delta)
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise ScenarioError(
        f"{where}: expected an ISO 8601 time or 'now[+-]N(s|m|h|d|w)', got {value!r}"
    )


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] is None:
        raise ScenarioError(f"{where}: missing required field '{key}'")
    return d[key]


def _str(d: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if v is None:
        raise ScenarioError(f"{where}: missing required field '{key}'")
    if not isinstance(v, str):
        raise ScenarioError(f"{where}.{key}: expected a string, got {v!r}")
    return v


def _list(d: dict[str, Any], key: str, where: str) -> list[Any]:
    v = d.get(key) or []
    if not isinstance(v, list):
        raise ScenarioError(f"{where}.{key}: expected a list, got {type(v).__name__}")
    return v


def _dict(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(v).__name__}")
    return v


def _tz(name: str, where: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScenarioError(f"{where}: unknown time zone {name!r}") from exc
    return name


def _unknown_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise ScenarioError(
            f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}"
        )


# --------------------------------------------------------------------------- entity parsers


def parse_user(d: Any, where: str, now: datetime | None = None) -> User:
    """A user; `deleted_at` (a time, or true = now) makes it a deleted user's placeholder."""
    d = _dict(d, where)
    _unknown_keys(
        d,
        {"id", "name", "email", "time_zone", "role", "job_title", "color", "teams", "deleted_at"},
        where,
    )
    deleted = d.get("deleted_at")
    deleted_at: datetime | None = None
    if deleted is True:
        deleted_at = now or system_now()
    elif deleted not in (None, False):
        deleted_at = parse_time(deleted, f"{where}.deleted_at", now or system_now())
    role = _str(d, "role", where, "user")
    if role not in USER_ROLES:
        raise ScenarioError(f"{where}.role: {role!r} is not one of {sorted(USER_ROLES)}")
    email = _str(d, "email", where)
    if "@" not in email:
        raise ScenarioError(f"{where}.email: {email!r} is not an email address")
    return User(
        id=_str(d, "id", where),
        name=_str(d, "name", where),
        email=email,
        time_zone=_tz(_str(d, "time_zone", where, "UTC"), f"{where}.time_zone"),
        role=role,
        job_title=_str(d, "job_title", where, ""),
        color=_str(d, "color", where, "purple"),
        teams=[str(t) for t in _list(d, "teams", where)],
        deleted_at=deleted_at,
    )


def _parse_restriction(d: Any, where: str) -> Restriction:
    d = _dict(d, where)
    rtype = _str(d, "type", where)
    if rtype not in ("daily_restriction", "weekly_restriction"):
        raise ScenarioError(f"{where}.type: must be daily_restriction or weekly_restriction")
    tod = _str(d, "start_time_of_day", where)
    if not re.fullmatch(r"\d\d:\d\d(:\d\d)?", tod):
        raise ScenarioError(f"{where}.start_time_of_day: expected HH:MM[:SS], got {tod!r}")
    if len(tod) == 5:
        tod += ":00"
    dur = int(_req(d, "duration_seconds", where))
    if dur <= 0:
        raise ScenarioError(f"{where}.duration_seconds: must be positive")
    dow = d.get("start_day_of_week")
    if rtype == "weekly_restriction" and (not isinstance(dow, int) or not 1 <= dow <= 7):
        raise ScenarioError(f"{where}.start_day_of_week: weekly restrictions need 1..7 (Mon..Sun)")
    return Restriction(rtype, tod, dur, dow)


def parse_schedule(d: Any, where: str, now: datetime, users: dict[str, User]) -> Schedule:
    d = _dict(d, where)
    _unknown_keys(
        d,
        {
            "id",
            "name",
            "time_zone",
            "description",
            "layers",
            "overrides",
            "version",
            "rotations",
            "restricted",
            "teams",
            "custom_shifts",
        },
        where,
    )
    sid = _str(d, "id", where)
    version = d.get("version", 2)
    if version not in (2, 3):
        raise ScenarioError(f"{where}.version: must be 2 or 3, got {version!r}")

    def user_ref(uid: Any, w: str) -> str:
        if uid not in users:
            raise ScenarioError(f"{w}: unknown user {uid!r}")
        return str(uid)

    layers: list[Layer] = []
    for i, ld in enumerate(_list(d, "layers", where)):
        lw = f"{where}.layers[{i}]"
        ld = _dict(ld, lw)
        _unknown_keys(
            ld,
            {
                "id",
                "name",
                "start",
                "end",
                "rotation_virtual_start",
                "rotation_turn_length_seconds",
                "users",
                "restrictions",
            },
            lw,
        )
        start = parse_time(_req(ld, "start", lw), f"{lw}.start", now)
        turn = ld.get("rotation_turn_length_seconds")
        if not isinstance(turn, int) or turn <= 0:
            raise ScenarioError(f"{lw}.rotation_turn_length_seconds: must be a positive integer")
        members = [user_ref(u, f"{lw}.users[{j}]") for j, u in enumerate(_list(ld, "users", lw))]
        if not members:
            raise ScenarioError(f"{lw}.users: a layer needs at least one user")
        end = parse_time(ld["end"], f"{lw}.end", now) if ld.get("end") is not None else None
        if end is not None and end <= start:
            raise ScenarioError(f"{lw}.end: must be after start")
        layers.append(
            Layer(
                id=str(ld.get("id") or f"{sid}L{i + 1}"),
                name=str(ld.get("name") or f"Layer {i + 1}"),
                start=start,
                end=end,
                rotation_virtual_start=parse_time(
                    ld.get("rotation_virtual_start", ld["start"]),
                    f"{lw}.rotation_virtual_start",
                    now,
                ),
                rotation_turn_length_seconds=turn,
                users=members,
                restrictions=[
                    _parse_restriction(r, f"{lw}.restrictions[{j}]")
                    for j, r in enumerate(_list(ld, "restrictions", lw))
                ],
            )
        )
    rotations: list[Rotation] = []
    for i, rd in enumerate(_list(d, "rotations", where)):
        rw = f"{where}.rotations[{i}]"
        rd = _dict(rd, rw)
        _unknown_keys(rd, {"id", "events"}, rw)
        rid = str(rd.get("id") or f"{sid}R{i + 1}")
        events = [
            _parse_event(ed, f"{rw}.events[{j}]", now, f"{rid}E{j + 1}", user_ref)
            for j, ed in enumerate(_list(rd, "events", rw))
        ]
        if not events:
            raise ScenarioError(f"{rw}.events: a rotation needs at least one event")
        rotations.append(Rotation(rid, events))
    if rotations and version != 3:
        raise ScenarioError(f"{where}.rotations: only v3 schedules (version: 3) have rotations")
    if not layers and not rotations:
        raise ScenarioError(f"{where}: a schedule needs layers (v2) or rotations (v3)")
    shifts: list[CustomShift] = []
    for i, cd in enumerate(_list(d, "custom_shifts", where)):
        cw = f"{where}.custom_shifts[{i}]"
        if version != 3:
            raise ScenarioError(f"{cw}: only v3 schedules (version: 3) have custom shifts")
        shifts.append(parse_custom_shift(cd, cw, now, f"{sid}C{i + 1}", user_ref))
    sched = Schedule(
        id=sid,
        name=_str(d, "name", where),
        time_zone=_tz(_str(d, "time_zone", where, "UTC"), f"{where}.time_zone"),
        description=_str(d, "description", where, ""),
        layers=layers,
        version=version,
        rotations=rotations,
        restricted=bool(d.get("restricted", False)),
        teams=[str(t) for t in _list(d, "teams", where)],
        custom_shifts=shifts,
    )
    for i, od in enumerate(_list(d, "overrides", where)):
        ow = f"{where}.overrides[{i}]"
        sched.overrides.append(
            parse_override(
                od, ow, now, str(_dict(od, ow).get("id") or f"{sid}O{i + 1}"), sched, user_ref
            )
        )
    return sched


def _time_field(d: dict[str, Any], names: tuple[str, str], w: str, now: datetime) -> datetime:
    for name in names:
        if d.get(name) is not None:
            value = d[name]
            if isinstance(value, dict):  # v3 ZonedDateTime {"date_time", "time_zone"}
                value = value.get("date_time")
            return parse_time(value, f"{w}.{name}", now)
    raise ScenarioError(f"{w}: missing required field '{names[0]}'")


def _member_ref(value: Any, w: str, user_ref: Any) -> str | None:
    """A user id, null / {"type": "empty_member"} (None), or {"type": "user_member", ...}."""
    if value is None or (isinstance(value, dict) and value.get("type") == "empty_member"):
        return None
    if isinstance(value, dict):
        return str(user_ref(value.get("user_id"), w))
    return str(user_ref(value, w))


def parse_custom_shift(
    d: Any, w: str, now: datetime, default_id: str, user_ref: Any
) -> CustomShift:
    """{id?, start|start_time, end|end_time, user_id | member | assignments: [{member}]}."""
    d = _dict(d, w)
    _unknown_keys(
        d,
        {
            "id",
            "type",
            "start",
            "end",
            "start_time",
            "end_time",
            "user_id",
            "member",
            "assignments",
        },
        w,
    )
    start = _time_field(d, ("start_time", "start"), w, now)
    end = _time_field(d, ("end_time", "end"), w, now)
    if end <= start:
        raise ScenarioError(f"{w}.end_time: must be after start_time")
    if "assignments" in d:
        assignments = _list(d, "assignments", w)
        if len(assignments) != 1:
            raise ScenarioError(f"{w}.assignments: a custom shift takes exactly one assignment")
        a = _dict(assignments[0], f"{w}.assignments[0]")
        uid = _member_ref(a.get("member"), f"{w}.assignments[0].member", user_ref)
    elif "member" in d:
        uid = _member_ref(d["member"], f"{w}.member", user_ref)
    else:
        uid = _member_ref(_req(d, "user_id", w), f"{w}.user_id", user_ref)
    return CustomShift(str(d.get("id") or default_id), start, end, uid)


def parse_override(
    d: Any, w: str, now: datetime, oid: str, sched: Schedule, user_ref: Any
) -> Override:
    """v2: {start, end, user_id}. v3 adds the target (rotation_id | custom_shift_id, optional
    when the schedule has a single rotation and no custom shift) and overridden_member."""
    d = _dict(d, w)
    _unknown_keys(
        d,
        {
            "id",
            "type",
            "start",
            "end",
            "start_time",
            "end_time",
            "user",
            "user_id",
            "overriding_member",
            "rotation_id",
            "custom_shift_id",
            "overridden_member",
            "overridden_user_id",
        },
        w,
    )
    start = _time_field(d, ("start", "start_time"), w, now)
    end = _time_field(d, ("end", "end_time"), w, now)
    if end <= start:
        raise ScenarioError(f"{w}.end: must be after start")
    shift_based = sched.version == 3 and bool(sched.rotations)
    if "overriding_member" in d:
        if not shift_based:
            raise ScenarioError(f"{w}.overriding_member: only v3 (shift-based) overrides have it")
        uid = _member_ref(d["overriding_member"], f"{w}.overriding_member", user_ref)
    else:
        raw = d.get("user_id", d.get("user"))
        if isinstance(raw, dict):
            raw = raw.get("id")
        uid = str(user_ref(raw, f"{w}.user"))
    ov = Override(oid, start, end, uid)
    targeted = {k for k in ("rotation_id", "custom_shift_id") if d.get(k)}
    overridden = {k for k in ("overridden_member", "overridden_user_id") if k in d}
    if not shift_based:
        if targeted or overridden:
            raise ScenarioError(
                f"{w}: rotation_id/custom_shift_id/overridden_member belong to v3 schedules "
                "with rotations; a v2 override replaces whoever is on call"
            )
        return ov
    if len(targeted) > 1:
        raise ScenarioError(f"{w}: set rotation_id or custom_shift_id, not both")
    if d.get("rotation_id"):
        rid = str(d["rotation_id"])
        if rid not in {r.id for r in sched.rotations}:
            raise ScenarioError(f"{w}.rotation_id: unknown rotation {rid!r}")
        ov.rotation_id = rid
    elif d.get("custom_shift_id"):
        cid = str(d["custom_shift_id"])
        if cid not in {c.id for c in sched.custom_shifts}:
            raise ScenarioError(f"{w}.custom_shift_id: unknown custom shift {cid!r}")
        ov.custom_shift_id = cid
    elif len(sched.rotations) == 1 and not sched.custom_shifts:
        ov.rotation_id = sched.rotations[0].id
    else:
        raise ScenarioError(
            f"{w}: a v3 override targets one rotation or custom shift: give rotation_id or "
            "custom_shift_id"
        )
    if overridden:
        key = "overridden_member" if "overridden_member" in d else "overridden_user_id"
        ov.overridden_user_id = _member_ref(d[key], f"{w}.{key}", user_ref)
        ov.overridden_given = True
    return ov


def _parse_event(d: Any, where: str, now: datetime, default_id: str, user_ref: Any) -> V3Event:
    d = _dict(d, where)
    _unknown_keys(
        d,
        {
            "id",
            "type",
            "name",
            "start_time",
            "end_time",
            "recurrence",
            "assignment_strategy",
            "effective_since",
            "effective_until",
        },
        where,
    )
    start = _time_field(d, ("start_time", "start_time"), where, now)
    end = _time_field(d, ("end_time", "end_time"), where, now)
    if end <= start:
        raise ScenarioError(f"{where}.end_time: must be after start_time")
    rec = d.get("recurrence") or []
    if isinstance(rec, str):
        rec = [rec]
    rule: RRule | None = None
    if rec:
        if len(rec) != 1:
            raise ScenarioError(
                f"{where}.recurrence: exactly one RRULE is supported (no EXDATE/RDATE), got {rec!r}"
            )
        try:
            rule = parse_rrule(str(rec[0]))
        except RRuleError as exc:
            raise ScenarioError(f"{where}.recurrence: {exc}") from None
    strat = _dict(_req(d, "assignment_strategy", where), f"{where}.assignment_strategy")
    stype = _str(
        strat, "type", f"{where}.assignment_strategy", "rotating_member_assignment_strategy"
    )
    if stype not in V3_STRATEGIES:
        raise ScenarioError(f"{where}.assignment_strategy.type: must be one of {V3_STRATEGIES}")
    members: list[str | None] = [
        _member_ref(m, f"{where}.assignment_strategy.members[{j}]", user_ref)
        for j, m in enumerate(_list(strat, "members", f"{where}.assignment_strategy"))
    ]
    if not members:
        raise ScenarioError(f"{where}.assignment_strategy.members: needs at least one member")
    since = d.get("effective_since")
    until = d.get("effective_until")
    return V3Event(
        id=str(d.get("id") or default_id),
        name=str(d.get("name") or default_id),
        start_time=start,
        end_time=end,
        rule=rule,
        strategy=stype,
        members=members,
        shifts_per_member=int(strat.get("shifts_per_member") or 1),
        effective_since=parse_time(since, f"{where}.effective_since", now) if since else None,
        effective_until=parse_time(until, f"{where}.effective_until", now) if until else None,
    )


def _parse_policy(d: Any, where: str, acct: Account) -> EscalationPolicy:
    d = _dict(d, where)
    _unknown_keys(d, {"id", "name", "rules", "levels"}, where)
    rules: list[list[Target]] = []
    for i, rule in enumerate(d.get("rules") or d.get("levels") or []):
        rw = f"{where}.rules[{i}]"
        targets_raw = rule.get("targets") if isinstance(rule, dict) else rule
        if not isinstance(targets_raw, list) or not targets_raw:
            raise ScenarioError(
                f"{rw}: expected a non-empty list of targets (or {{targets: [...]}})"
            )
        targets: list[Target] = []
        for j, t in enumerate(targets_raw):
            tw = f"{rw}.targets[{j}]"
            t = _dict(t, tw)
            ttype = str(t.get("type", "")).removesuffix("_reference")
            tid = _str(t, "id", tw)
            if ttype == "schedule":
                if tid not in acct.schedules:
                    raise ScenarioError(f"{tw}: unknown schedule {tid!r}")
            elif ttype == "user":
                if acct.any_user(tid) is None:
                    raise ScenarioError(f"{tw}: unknown user {tid!r}")
            else:
                raise ScenarioError(f"{tw}.type: must be 'schedule' or 'user'")
            targets.append(Target(ttype, tid))
        rules.append(targets)
    if not rules:
        raise ScenarioError(f"{where}.rules: a policy needs at least one escalation rule")
    return EscalationPolicy(_str(d, "id", where), _str(d, "name", where), rules)


def parse_required_abilities(v: Any, where: str) -> dict[str, list[str]]:
    """{"/v3/schedules": "v3_schedules", "team_ids[]": ["teams"]}: a route template (it also
    gates the routes under it) or a query parameter, mapped to the abilities it needs."""
    v = _dict(v, where)
    out: dict[str, list[str]] = {}
    for key, need in v.items():
        if need is None:
            need = []
        if isinstance(need, str):
            need = [need]
        if not isinstance(need, list) or not all(isinstance(a, str) for a in need):
            raise ScenarioError(f"{where}.{key}: expected an ability name or a list of them")
        out[str(key)] = list(need)
    return out


def parse_account(d: Any, where: str, now: datetime) -> Account:
    d = _dict(d, where)
    _unknown_keys(
        d,
        {
            "id",
            "name",
            "subdomain",
            "region",
            "api_access",
            "abilities",
            "time_zone",
            "users",
            "schedules",
            "escalation_policies",
            "teams",
            "required_abilities",
        },
        where,
    )
    aid = _str(d, "id", where)
    region = _str(d, "region", where, "us")
    if region not in REGIONS:
        raise ScenarioError(f"{where}.region: must be 'us' or 'eu', got {region!r}")
    acct = Account(
        id=aid,
        name=_str(d, "name", where, aid),
        subdomain=_str(d, "subdomain", where, aid),
        region=region,
        api_access=bool(d.get("api_access", True)),
        abilities=[str(a) for a in d.get("abilities", DEFAULT_ABILITIES)],
        time_zone=_tz(_str(d, "time_zone", where, "UTC"), f"{where}.time_zone"),
    )
    if d.get("required_abilities") is not None:
        acct.required_abilities.update(
            parse_required_abilities(d["required_abilities"], f"{where}.required_abilities")
        )
    for i, td in enumerate(_list(d, "teams", where)):
        td = _dict(td, f"{where}.teams[{i}]")
        team = Team(_str(td, "id", f"{where}.teams[{i}]"), _str(td, "name", f"{where}.teams[{i}]"))
        acct.teams[team.id] = team
    for i, ud in enumerate(_list(d, "users", where)):
        user = parse_user(ud, f"{where}.users[{i}]", now)
        if acct.any_user(user.id) is not None:
            raise ScenarioError(f"{where}.users[{i}].id: duplicate user id {user.id!r}")
        (acct.deleted_users if user.deleted_at else acct.users)[user.id] = user
    everyone = {**acct.users, **acct.deleted_users}
    for i, sd in enumerate(_list(d, "schedules", where)):
        sched = parse_schedule(sd, f"{where}.schedules[{i}]", now, everyone)
        if sched.id in acct.schedules:
            raise ScenarioError(f"{where}.schedules[{i}].id: duplicate schedule id {sched.id!r}")
        acct.schedules[sched.id] = sched
    for i, pd in enumerate(_list(d, "escalation_policies", where)):
        pol = _parse_policy(pd, f"{where}.escalation_policies[{i}]", acct)
        acct.escalation_policies[pol.id] = pol
    return acct


def scenario_from_dict(data: Any, *, now: datetime | None = None, name: str = "custom") -> Scenario:
    now = now or system_now()
    data = _dict(data, "scenario")
    _unknown_keys(data, {"name", "accounts", "api_keys", "oauth_apps"}, "scenario")
    sc = Scenario(name=str(data.get("name") or name))
    for i, ad in enumerate(_list(data, "accounts", "scenario")):
        acct = parse_account(ad, f"accounts[{i}]", now)
        if acct.id in sc.accounts:
            raise ScenarioError(f"accounts[{i}].id: duplicate account id {acct.id!r}")
        sc.accounts[acct.id] = acct
    if not sc.accounts:
        raise ScenarioError("scenario: needs at least one account")
    seen_keys: set[str] = set()
    seen_labels: set[str] = set()
    for i, kd in enumerate(_list(data, "api_keys", "scenario")):
        w = f"api_keys[{i}]"
        kd = _dict(kd, w)
        _unknown_keys(
            kd, {"label", "key", "account", "account_id", "kind", "user", "user_id", "read_only"}, w
        )
        aid = kd.get("account_id", kd.get("account"))
        if aid not in sc.accounts:
            raise ScenarioError(f"{w}.account: unknown account {aid!r}")
        kind = _str(kd, "kind", w, "account")
        uid = kd.get("user_id", kd.get("user"))
        if kind not in ("account", "user"):
            raise ScenarioError(f"{w}.kind: must be 'account' or 'user'")
        if kind == "user" and sc.accounts[aid].any_user(uid) is None:
            raise ScenarioError(f"{w}.user: a user-level key needs a user of account {aid!r}")
        key = ApiKey(
            _str(kd, "label", w),
            _str(kd, "key", w),
            aid,
            kind,
            uid if kind == "user" else None,
            bool(kd.get("read_only", True)),
        )
        if key.key in seen_keys or key.label in seen_labels:
            raise ScenarioError(f"{w}: duplicate api key label or value")
        seen_keys.add(key.key)
        seen_labels.add(key.label)
        sc.api_keys.append(key)
    seen_clients: set[str] = set()
    for i, od in enumerate(_list(data, "oauth_apps", "scenario")):
        w = f"oauth_apps[{i}]"
        od = _dict(od, w)
        _unknown_keys(
            od,
            {
                "label",
                "name",
                "client_id",
                "client_secret",
                "scopes",
                "redirect_uris",
                "account",
                "account_id",
                "authorize_as",
            },
            w,
        )
        aid = od.get("account_id", od.get("account"))
        if aid not in sc.accounts:
            raise ScenarioError(f"{w}.account: unknown account {aid!r}")
        scopes = od.get("scopes", "openid")
        if isinstance(scopes, str):
            scopes = scopes.split()
        as_user = od.get("authorize_as")
        if as_user is not None and as_user not in sc.accounts[aid].users:
            raise ScenarioError(f"{w}.authorize_as: unknown user {as_user!r} in account {aid!r}")
        app = OAuthApp(
            label=_str(od, "label", w),
            client_id=_str(od, "client_id", w),
            client_secret=_str(od, "client_secret", w),
            account_id=aid,
            scopes=[str(s) for s in scopes],
            redirect_uris=[str(u) for u in _list(od, "redirect_uris", w)],
            authorize_as=as_user,
            name=str(od.get("name") or od["label"]),
        )
        if app.client_id in seen_clients or app.label in seen_labels:
            raise ScenarioError(f"{w}: duplicate client_id or label")
        seen_clients.add(app.client_id)
        seen_labels.add(app.label)
        sc.oauth_apps.append(app)
    return sc


def load_scenario(source: Any, *, now: datetime | None = None) -> Scenario:
    """Accept a Scenario, a dict, a built-in name ("demo"), or a path to a .yaml/.yml/.json file."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return scenario_from_dict(source, now=now)
    path = Path(str(source))
    builtin = SCENARIO_DIR / f"{source}.yaml"
    if isinstance(source, str) and not path.exists() and builtin.exists():
        path = builtin
    if not path.exists():
        names = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ScenarioError(f"scenario {source!r}: no such file or built-in scenario {names}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot parse: {exc}") from exc
    return scenario_from_dict(data, now=now, name=path.stem)


def _t(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _user_to_dict(u: User) -> dict[str, Any]:
    d = vars(u).copy()
    d["deleted_at"] = _t(u.deleted_at)
    return d


def _override_to_dict(o: Override) -> dict[str, Any]:
    d: dict[str, Any] = {"id": o.id, "start": _t(o.start), "end": _t(o.end)}
    if o.rotation_id or o.custom_shift_id:
        d["overriding_member"] = o.user_id
        if o.rotation_id:
            d["rotation_id"] = o.rotation_id
        if o.custom_shift_id:
            d["custom_shift_id"] = o.custom_shift_id
        if o.overridden_given:
            d["overridden_member"] = o.overridden_user_id
    else:
        d["user_id"] = o.user_id
    return d


def scenario_to_dict(sc: Scenario) -> dict[str, Any]:
    """Inverse of `scenario_from_dict` (used to hand generated scenarios to a subprocess)."""
    accounts = []
    for a in sc.accounts.values():
        schedules = []
        for s in a.schedules.values():
            sd: dict[str, Any] = {
                "id": s.id,
                "name": s.name,
                "time_zone": s.time_zone,
                "description": s.description,
                "version": s.version,
                "restricted": s.restricted,
                "teams": s.teams,
                "layers": [
                    {
                        "id": la.id,
                        "name": la.name,
                        "start": _t(la.start),
                        "end": _t(la.end),
                        "rotation_virtual_start": _t(la.rotation_virtual_start),
                        "rotation_turn_length_seconds": la.rotation_turn_length_seconds,
                        "users": la.users,
                        "restrictions": [
                            {k: v for k, v in vars(r).items() if v is not None}
                            for r in la.restrictions
                        ],
                    }
                    for la in s.layers
                ],
                "overrides": [_override_to_dict(o) for o in s.overrides],
                "custom_shifts": [
                    {
                        "id": c.id,
                        "start_time": _t(c.start),
                        "end_time": _t(c.end),
                        "member": c.user_id,
                    }
                    for c in s.custom_shifts
                ],
                "rotations": [
                    {
                        "id": r.id,
                        "events": [
                            {
                                "id": e.id,
                                "name": e.name,
                                "start_time": _t(e.start_time),
                                "end_time": _t(e.end_time),
                                "recurrence": e.recurrence,
                                "effective_since": _t(e.effective_since),
                                "effective_until": _t(e.effective_until),
                                "assignment_strategy": {
                                    "type": e.strategy,
                                    "shifts_per_member": e.shifts_per_member,
                                    "members": e.members,
                                },
                            }
                            for e in r.events
                        ],
                    }
                    for r in s.rotations
                ],
            }
            schedules.append(sd)
        accounts.append(
            {
                "id": a.id,
                "name": a.name,
                "subdomain": a.subdomain,
                "region": a.region,
                "api_access": a.api_access,
                "abilities": a.abilities,
                "time_zone": a.time_zone,
                "teams": [{"id": t.id, "name": t.name} for t in a.teams.values()],
                "users": [_user_to_dict(u) for u in [*a.users.values(), *a.deleted_users.values()]],
                "required_abilities": {k: list(v) for k, v in a.required_abilities.items()},
                "schedules": schedules,
                "escalation_policies": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "rules": [
                            {"targets": [{"type": t.type, "id": t.id} for t in rule]}
                            for rule in p.rules
                        ],
                    }
                    for p in a.escalation_policies.values()
                ],
            }
        )
    return {
        "name": sc.name,
        "accounts": accounts,
        "api_keys": [vars(k).copy() for k in sc.api_keys],
        "oauth_apps": [vars(o).copy() for o in sc.oauth_apps],
    }

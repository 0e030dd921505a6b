"""PagerDuty REST API v2 (read-only subset) plus the v3 schedules endpoints."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response

from . import engine
from .http import ApiError, base_url, fmt_time, invalid_input, json_response
from .scenario import Account, EscalationPolicy, Schedule, User
from .state import Principal, SimState

MAX_OFFSET_WINDOW = 10_000
OFFSET_CAP_ERROR = (
    "Offset+limit exceeds maximum allowed value of 10000. Please try to refine your search to "
    "reduce the returned set of records below this number, like adding a date range."
)
TWO_WEEKS = timedelta(days=14)
MIN_RENDER_WINDOW = timedelta(seconds=1)  # shorter (non-zero) windows render nothing (#479)
ABILITY_ERROR_CODE = 2014  # "Required abilities are unavailable" (tidbyt/community#810)


@dataclass
class Ctx:
    request: Request
    state: SimState
    region: str  # region of the URL prefix used: us (root) | eu (/eu)
    rest_base: str  # e.g. http://127.0.0.1:8090 or http://127.0.0.1:8090/eu
    principal: Principal
    params: dict[str, str]

    @property
    def account(self) -> Account:
        return self.principal.account

    @property
    def q(self) -> Any:
        return self.request.query_params

    @property
    def web_base(self) -> str:
        acct = self.account
        host = (
            f"{acct.subdomain}.eu.pagerduty.com"
            if acct.region == "eu"
            else (f"{acct.subdomain}.pagerduty.com")
        )
        return f"https://{host}"


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass
class Route:
    template: str
    regex: re.Pattern[str]
    handler: Handler
    scope: str | None  # required OAuth scope (x-pd-requires-scope); None = any user token


ROUTES: list[Route] = []


def route(template: str, scope: str | None) -> Callable[[Handler], Handler]:
    pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

    def deco(fn: Handler) -> Handler:
        ROUTES.append(Route(template, re.compile(pattern), fn, scope))
        return fn

    return deco


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    for r in ROUTES:
        m = r.regex.match(path)
        if m:
            return r, m.groupdict()
    return None


# --------------------------------------------------------------------------- parameter parsing


def _int_param(q: Any, name: str, default: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid_input(f"{name.capitalize()} must be an integer") from None


def paging(ctx: Ctx, default: int = 25, maximum: int = 100) -> tuple[int, int, bool]:
    limit = _int_param(ctx.q, "limit", default)
    offset = _int_param(ctx.q, "offset", 0)
    if limit < 1:
        raise invalid_input("Limit must be greater than zero")
    if offset < 0:
        raise invalid_input("Offset must not be negative")
    limit = min(limit, maximum)  # PagerDuty clamps an oversized limit instead of failing
    if offset + limit > MAX_OFFSET_WINDOW:
        # the exact body PagerDuty sends (cloudquery#12750, faros-ai/airbyte-connectors#991)
        raise ApiError(400, "Arguments Caused Error", 2002, [OFFSET_CAP_ERROR])
    return limit, offset, ctx.q.get("total") == "true"


def paginate(
    ctx: Ctx,
    items: list[Any],
    key: str,
    render: Callable[[Any], dict[str, Any]],
    default: int = 25,
    maximum: int = 100,
) -> Response:
    limit, offset, want_total = paging(ctx, default, maximum)
    page = items[offset : offset + limit]
    return json_response(
        {
            key: [render(x) for x in page],
            "limit": limit,
            "offset": offset,
            "more": offset + len(page) < len(items),
            "total": len(items) if want_total else None,
        }
    )


def tz_param(ctx: Ctx, default: str) -> ZoneInfo:
    name = ctx.q.get("time_zone") or default
    try:
        return engine.zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_input(f"Time zone {name!r} is not a valid time zone") from None


def _parse_dt(raw: str, name: str, tz: ZoneInfo) -> datetime:
    try:
        dt = datetime.fromisoformat(raw.strip().replace(" ", "+"))  # '+' may arrive as space
    except ValueError:
        raise invalid_input(f"{name.capitalize()} is not a valid ISO 8601 date/time") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def window(
    ctx: Ctx, tz: ZoneInfo, *, default_span: timedelta = TWO_WEEKS, zero_ok: bool = False
) -> tuple[datetime, datetime]:
    """since/until: each defaults to the other -/+ two weeks, and since to now."""
    raw_since, raw_until = ctx.q.get("since"), ctx.q.get("until")
    since = _parse_dt(raw_since, "since", tz) if raw_since else None
    until = _parse_dt(raw_until, "until", tz) if raw_until else None
    if since is None and until is None:
        since = ctx.state.now()
        until = since + default_span
    elif since is None:
        assert until is not None
        since = until - default_span
    elif until is None:
        until = since + default_span
    if until < since or (until == since and not zero_ok):
        raise invalid_input("Until must be after since")
    return since, until


def has_window(ctx: Ctx) -> bool:
    return bool(ctx.q.get("since") or ctx.q.get("until"))


def id_set(ctx: Ctx, name: str) -> set[str] | None:
    values = ctx.q.getlist(name)
    return set(values) if values else None


def includes(ctx: Ctx) -> set[str]:
    return set(ctx.q.getlist("include[]"))


# --------------------------------------------------------------------------- rendering


def ref(
    ctx: Ctx, kind: str, id_: str, summary: str, path: str, web: str | None = None
) -> dict[str, Any]:
    return {
        "id": id_,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"{ctx.rest_base}/{path}/{id_}",
        "html_url": f"{ctx.web_base}/{web or path}/{id_}",
    }


def user_ref(ctx: Ctx, user: User) -> dict[str, Any]:
    out = ref(ctx, "user", user.id, user.name, "users")
    if user.deleted_at is not None:
        # a deleted user left on a schedule or policy: an "inactive" placeholder with an
        # undocumented deleted_at (go-pagerduty#509, #425; qontract-reconcile#2074)
        out["summary"] = f"{user.name} - inactive"
        out["deleted_at"] = fmt_time(user.deleted_at)
    return out


def user_ref_by_id(ctx: Ctx, uid: str | None) -> dict[str, Any] | None:
    user = ctx.account.any_user(uid)
    return user_ref(ctx, user) if user is not None else None


def user_obj(ctx: Ctx, user: User) -> dict[str, Any]:
    acct = ctx.account
    return {
        "id": user.id,
        "type": "user",
        "summary": user.name,
        "self": f"{ctx.rest_base}/users/{user.id}",
        "html_url": f"{ctx.web_base}/users/{user.id}",
        "name": user.name,
        "email": user.email,
        "time_zone": user.time_zone,
        "color": user.color,
        "role": user.role,
        "avatar_url": "https://secure.gravatar.com/avatar/0?d=mm",
        "description": "",
        "invitation_sent": False,
        "job_title": user.job_title,
        "teams": [
            ref(ctx, "team", t, acct.teams[t].name if t in acct.teams else t, "teams")
            for t in user.teams
        ],
        "contact_methods": [
            {
                "id": f"{user.id}E",
                "type": "email_contact_method_reference",
                "summary": "Default",
                "self": f"{ctx.rest_base}/users/{user.id}/contact_methods/{user.id}E",
                "html_url": None,
            }
        ],
        "notification_rules": [],
    }


def schedule_ref(ctx: Ctx, s: Schedule) -> dict[str, Any]:
    if s.version == 3:
        return {
            "id": s.id,
            "type": "schedule_v3_reference",
            "summary": s.name,
            "self": f"{ctx.rest_base}/v3/schedules/{s.id}",
            "html_url": f"{ctx.web_base}/schedules/{s.id}",
        }
    return ref(ctx, "schedule", s.id, s.name, "schedules")


def policy_ref(ctx: Ctx, p: EscalationPolicy) -> dict[str, Any]:
    return ref(ctx, "escalation_policy", p.id, p.name, "escalation_policies")


def _user_refs(ctx: Ctx, ids: list[str]) -> list[dict[str, Any]]:
    """Active users and deleted users' placeholders, in order."""
    return [r for r in (user_ref_by_id(ctx, u) for u in ids) if r is not None]


def _entries(
    ctx: Ctx, segs: list[engine.Segment], tz: ZoneInfo, clip_end: datetime | None = None
) -> list[dict[str, Any]]:
    out = []
    for seg in segs:
        end = seg.end if clip_end is None else min(seg.end, clip_end)
        entry: dict[str, Any] = {"start": fmt_time(seg.start, tz), "end": fmt_time(end, tz)}
        user = user_ref_by_id(ctx, seg.user_id)
        if user is not None:
            entry["user"] = user
        out.append(entry)
    return out


@dataclass
class Render:
    """How much of a schedule to render: nothing (no window), or entries for [since, until)."""

    since: datetime
    until: datetime
    instant: bool = False  # since == until: what is on at that instant (api-schema#479)
    empty: bool = False  # 0 < until - since < 1 s: PagerDuty may render nothing (#479)

    @property
    def compute_until(self) -> datetime:
        return self.since + timedelta(seconds=1) if self.instant else self.until


def render_plan(since: datetime, until: datetime) -> Render:
    span = until - since
    if span == timedelta(0):
        return Render(since, until, instant=True)
    return Render(since, until, empty=span < MIN_RENDER_WINDOW)


def _sub_schedule(
    ctx: Ctx, name: str, plan: Render | None, tz: ZoneInfo, segs: Callable[[], list[engine.Segment]]
) -> dict[str, Any]:
    if plan is None:
        # no since/until: no entries, coverage null (thegreenrobot/pagerduty_dashing#19)
        return {"name": name, "rendered_schedule_entries": [], "rendered_coverage_percentage": None}
    if plan.empty:
        return {"name": name, "rendered_schedule_entries": [], "rendered_coverage_percentage": 0.0}
    found = segs()
    return {
        "name": name,
        "rendered_schedule_entries": _entries(
            ctx, found, tz, clip_end=plan.until if plan.instant else None
        ),
        "rendered_coverage_percentage": engine.coverage_percentage(
            found, plan.since, plan.compute_until
        ),
    }


def _layer_obj(
    ctx: Ctx, s: Schedule, layer: Any, plan: Render | None, tz: ZoneInfo
) -> dict[str, Any]:
    ld: dict[str, Any] = {
        "id": layer.id,
        "name": layer.name,
        "start": fmt_time(layer.start, tz),
        "rotation_virtual_start": fmt_time(layer.rotation_virtual_start, tz),
        "rotation_turn_length_seconds": layer.rotation_turn_length_seconds,
        "users": [{"user": u} for u in _user_refs(ctx, layer.users)],
        "restrictions": [
            {
                k: v
                for k, v in {
                    "type": r.type,
                    "start_time_of_day": r.start_time_of_day,
                    "duration_seconds": r.duration_seconds,
                    "start_day_of_week": r.start_day_of_week,
                }.items()
                if v is not None
            }
            for r in layer.restrictions
        ],
    }
    if layer.end is not None:
        ld["end"] = fmt_time(layer.end, tz)
    sub = _sub_schedule(
        ctx,
        "",
        plan,
        tz,
        lambda: engine.layer_entries(
            layer,
            s.time_zone,
            plan.since,
            plan.compute_until,  # type: ignore[union-attr]
        ),
    )
    # layer entries are the layer's own rotation: overrides never show here
    ld["rendered_schedule_entries"] = sub["rendered_schedule_entries"]
    ld["rendered_coverage_percentage"] = sub["rendered_coverage_percentage"]
    return ld


def schedule_obj(
    ctx: Ctx,
    s: Schedule,
    *,
    layers: bool,
    subschedules: bool,
    plan: Render | None,
    tz: ZoneInfo,
    overflow: bool = False,
) -> dict[str, Any]:
    acct = ctx.account
    obj: dict[str, Any] = {
        "id": s.id,
        "type": "schedule",
        "summary": s.name,
        "self": f"{ctx.rest_base}/schedules/{s.id}",
        "html_url": f"{ctx.web_base}/schedules/{s.id}",
        "name": s.name,
        "time_zone": s.time_zone,
        "description": s.description,
        "users": _user_refs(ctx, s.user_ids()),
        "escalation_policies": [policy_ref(ctx, p) for p in acct.policies_for_schedule(s.id)],
        "teams": [
            ref(ctx, "team", t, acct.teams[t].name if t in acct.teams else t, "teams")
            for t in s.teams
        ],
    }
    if layers:
        # PagerDuty lists the highest-priority (last-defined) layer first
        obj["schedule_layers"] = [_layer_obj(ctx, s, la, plan, tz) for la in reversed(s.layers)]
    if not subschedules:
        return obj

    def overrides() -> list[engine.Segment]:
        assert plan is not None
        lo, hi = plan.since, plan.compute_until
        return [
            engine.Segment(max(o.start, lo), min(o.end, hi), o.user_id, "override", o.id)
            for o in sorted(s.overrides, key=lambda o: o.start)
            if o.start < hi and o.end > lo
        ]

    def final() -> list[engine.Segment]:
        assert plan is not None
        return engine.final_entries(s, plan.since, plan.compute_until, overflow=overflow)

    obj["overrides_subschedule"] = _sub_schedule(ctx, "Overrides", plan, tz, overrides)
    obj["final_schedule"] = _sub_schedule(ctx, "Final Schedule", plan, tz, final)
    return obj


def _visible_schedule(ctx: Ctx, sid: str, version: int) -> Schedule:
    s = ctx.account.schedules.get(sid)
    if s is None:
        raise ApiError(404, "Not Found", 2100)
    if s.version != version:
        if version == 3:
            # v3 endpoint on a schedule that was never upgraded (facts: HTTP 400)
            raise ApiError(400, "Schedule is not a v3 schedule", 2001)
        raise ApiError(404, "Not Found", 2100)  # upgraded schedules leave the v2 surface
    if not ctx.principal.can_see_schedule(s):
        raise ApiError(
            403, "Access Denied", 2010, ["You do not have permission to view this schedule"]
        )
    return s


def _query_match(q: str | None, *texts: str) -> bool:
    if not q:
        return True
    q = q.lower()
    return any(q in t.lower() for t in texts)


# --------------------------------------------------------------------------- handlers


@route("/users", "users.read")
async def list_users(ctx: Ctx) -> Response:
    query = ctx.q.get("query")
    teams = id_set(ctx, "team_ids[]")
    p = ctx.principal
    users = [
        u
        for u in ctx.account.users.values()
        if _query_match(query, u.name, u.email)
        and (teams is None or teams & set(u.teams))
        and p.can_see_user(u.id)
    ]
    return paginate(ctx, users, "users", lambda u: user_obj(ctx, u))


@route("/users/me", None)
async def get_me(ctx: Ctx) -> Response:
    uid = ctx.principal.user_id
    if uid is None:
        # PagerDuty answers 400 with a *string* error for account-level keys
        return json_response(
            {
                "error": "Because this request was made using an account-level access token, we "
                "were unable to determine the user's identity. Please use a user-level token."
            },
            400,
        )
    user = ctx.account.users.get(uid)
    if user is None:
        raise ApiError(404, "Not Found", 2100)
    return json_response({"user": user_obj(ctx, user)})


@route("/users/{id}", "users.read")
async def get_user(ctx: Ctx) -> Response:
    user = ctx.account.users.get(ctx.params["id"])  # deleted users: 404
    if user is None:
        raise ApiError(404, "Not Found", 2100)
    if not ctx.principal.can_see_user(user.id):
        raise ApiError(403, "Access Denied", 2010, ["You do not have permission to view this user"])
    return json_response({"user": user_obj(ctx, user)})


@route("/schedules", "schedules.read")
async def list_schedules(ctx: Ctx) -> Response:
    query = ctx.q.get("query")
    teams = id_set(ctx, "team_ids[]")
    inc = includes(ctx)
    p = ctx.principal
    scheds = [
        s
        for s in ctx.account.schedules.values()
        if s.version == 2
        and p.can_see_schedule(s)
        and _query_match(query, s.name)
        and (teams is None or teams & set(s.teams))
    ]
    tz_default = ctx.account.time_zone
    if p.user is not None:
        tz_default = p.user.time_zone
    tz = tz_param(ctx, tz_default)
    # The list never renders final_schedule or overrides_subschedule, whatever include[] asks
    # (api-schema#430). Layer entries need include[]=schedule_layers plus since, until AND
    # time_zone; otherwise layers come without entries.
    layers = "schedule_layers" in inc
    plan = None
    if layers and all(ctx.q.get(k) for k in ("since", "until", "time_zone")):
        plan = render_plan(*window(ctx, tz, zero_ok=True))
    return paginate(
        ctx,
        scheds,
        "schedules",
        lambda s: schedule_obj(ctx, s, layers=layers, subschedules=False, plan=plan, tz=tz),
    )


@route("/schedules/{id}", "schedules.read")
async def get_schedule(ctx: Ctx) -> Response:
    s = _visible_schedule(ctx, ctx.params["id"], 2)
    tz = tz_param(ctx, s.time_zone)
    # entries only with since and/or until (the other bound defaults to +/- two weeks)
    plan = render_plan(*window(ctx, tz, zero_ok=True)) if has_window(ctx) else None
    overflow = ctx.q.get("overflow") == "true"
    body = schedule_obj(ctx, s, layers=True, subschedules=True, plan=plan, tz=tz, overflow=overflow)
    return json_response({"schedule": body})


@route("/schedules/{id}/users", "users.read")
async def schedule_users(ctx: Ctx) -> Response:
    s = _visible_schedule(ctx, ctx.params["id"], 2)
    users = ctx.account.users  # active users only: a deleted user has no user object
    if not has_window(ctx):
        # without since/until: everyone on the schedule, not who is on call
        ids = [u for u in s.user_ids() if u in users]
    else:
        since, until = window(ctx, engine.zone(s.time_zone), zero_ok=True)
        if since == until:
            until = since + timedelta(seconds=1)
        ids = list(
            dict.fromkeys(
                seg.user_id for seg in engine.final_entries(s, since, until) if seg.user_id in users
            )
        )
    return json_response({"users": [user_obj(ctx, users[u]) for u in ids if u is not None]})


OncallRow = tuple[EscalationPolicy, int, str, Schedule | None, datetime | None, datetime | None]


@route("/oncalls", "oncalls.read")
async def list_oncalls(ctx: Ctx) -> Response:
    acct = ctx.account
    tz = tz_param(ctx, acct.time_zone)
    now = ctx.state.now()
    since, until = window(ctx, tz, default_span=timedelta(0), zero_ok=True)
    if not ctx.q.get("since") and not ctx.q.get("until"):
        since = until = now
    if until - since > timedelta(days=90):
        raise invalid_input("The window between since and until must not exceed 90 days")
    want_users = id_set(ctx, "user_ids[]")
    want_policies = id_set(ctx, "escalation_policy_ids[]")
    want_scheds = id_set(ctx, "schedule_ids[]")
    earliest = ctx.q.get("earliest") == "true"
    p = ctx.principal
    rows: list[OncallRow] = []
    for pol in acct.escalation_policies.values():
        if want_policies is not None and pol.id not in want_policies:
            continue
        for level, rule in enumerate(pol.rules, start=1):
            for target in rule:
                if target.type == "user":
                    # permanent on-call via a direct user target; `schedule_ids[]=null` keeps it
                    if want_scheds is not None and "null" not in want_scheds:
                        continue
                    if acct.any_user(target.id) is not None and p.can_see_user(target.id):
                        rows.append((pol, level, target.id, None, None, None))
                    continue
                sched = acct.schedules.get(target.id)
                if sched is None or not p.can_see_schedule(sched):
                    continue
                if want_scheds is not None and sched.id not in want_scheds:
                    continue
                for seg in engine.oncall_segments(sched, since, until):
                    assert seg.user_id is not None
                    rows.append((pol, level, seg.user_id, sched, seg.start, seg.end))
    if want_users is not None:
        rows = [r for r in rows if r[2] in want_users]
    if earliest:
        firsts: dict[tuple[str, int, str], Any] = {}
        for r in rows:
            k = (r[0].id, r[1], r[2])
            if k not in firsts or (r[4] and firsts[k][4] and r[4] < firsts[k][4]):
                firsts[k] = r
        rows = list(firsts.values())
    embed_users = "users" in includes(ctx)

    def render(r: OncallRow) -> dict[str, Any]:
        pol, level, uid, sched, start, end = r
        user = acct.any_user(uid)
        assert user is not None
        return {
            "escalation_policy": policy_ref(ctx, pol),
            "escalation_level": level,
            # include[]=users embeds full user objects; a deleted user stays a placeholder
            "user": user_obj(ctx, user)
            if embed_users and user.deleted_at is None
            else user_ref(ctx, user),
            # permanent on-calls (direct user targets): schedule, start and end are null
            "schedule": schedule_ref(ctx, sched) if sched is not None else None,
            "start": fmt_time(start, tz) if start is not None else None,
            "end": fmt_time(end, tz) if end is not None else None,
        }

    return paginate(ctx, rows, "oncalls", render)


@route("/abilities", "abilities.read")
async def list_abilities(ctx: Ctx) -> Response:
    return json_response({"abilities": list(ctx.account.abilities)})


@route("/v3/schedules", "schedules.read")
async def list_v3_schedules(ctx: Ctx) -> Response:
    limit = _int_param(ctx.q, "limit", 100)
    offset = _int_param(ctx.q, "offset", 0)
    if not 1 <= limit <= 1000 or offset < 0:
        # the v3 API validates against its schema (limit 1..1000) instead of clamping
        return json_response(
            {
                "error": {
                    "message": "Invalid Request",
                    "code": 2001,
                    "errors": {"limit": ["must be between 1 and 1000"]},
                }
            },
            400,
        )
    teams = id_set(ctx, "team_ids[]")
    p = ctx.principal
    # No `query` filter and no `total` on v3 (developer docs, "Schedules v2 to v3 upgrade
    # guide"), although the OpenAPI schema lists both.
    scheds = [
        s
        for s in ctx.account.schedules.values()
        if s.version == 3 and p.can_see_schedule(s) and (teams is None or teams & set(s.teams))
    ]
    page = scheds[offset : offset + limit]
    return json_response(
        {
            "schedules": [schedule_ref(ctx, s) for s in page],
            "limit": limit,
            "offset": offset,
            "more": offset + len(page) < len(scheds),
        }
    )


@route("/v3/schedules/{id}", "schedules.read")
async def get_v3_schedule(ctx: Ctx) -> Response:
    s = _visible_schedule(ctx, ctx.params["id"], 3)
    acct = ctx.account
    tz = tz_param(ctx, s.time_zone)
    inc = includes(ctx)
    obj: dict[str, Any] = {
        "id": s.id,
        "type": "schedule_v3",
        "name": s.name,
        "description": s.description,
        "time_zone": s.time_zone,
        "self": f"{ctx.rest_base}/v3/schedules/{s.id}",
        "html_url": f"{ctx.web_base}/schedules/{s.id}",
        "escalation_policies": [policy_ref(ctx, p) for p in acct.policies_for_schedule(s.id)],
        "teams": [
            ref(ctx, "team", t, acct.teams[t].name if t in acct.teams else t, "teams")
            for t in s.teams
        ],
        "rotations": [_rotation_obj(ctx, s, r) for r in s.rotations],
    }
    if "users" in inc:
        obj["users"] = _user_refs(ctx, s.user_ids())  # only with include[]=users
    if "final_schedule" in inc and has_window(ctx):
        since, until = window(ctx, tz)
        segs = engine.v3_assignments(s, since, until, overflow=ctx.q.get("overflow") == "true")
        obj["final_schedule"] = {
            "type": "final_schedule",
            "rendered_coverage_percentage": engine.coverage_percentage(segs, since, until),
            "computed_shift_assignments": [_assignment(seg, tz) for seg in segs],
        }
    return json_response({"schedule": obj})


def _source(seg: engine.Segment) -> dict[str, Any]:
    if seg.source == "rotation_override":
        return {
            "type": "schedule_rotation_override",
            "override_id": seg.source_id,
            "rotation_id": seg.target,
        }
    if seg.source == "custom_shift_override":
        return {
            "type": "custom_shift_override",
            "override_id": seg.source_id,
            "shift_id": seg.target,
        }
    if seg.source == "custom_shift":
        return {"type": "custom_shift", "shift_id": seg.source_id}
    if seg.source == "override":  # an upgraded schedule without rotations: v2 override layer
        return {"type": "schedule_rotation_override", "override_id": seg.source_id}
    return {"type": "schedule_rotation", "rotation_id": seg.source_id}


def _assignment(seg: engine.Segment, tz: ZoneInfo) -> dict[str, Any]:
    member: dict[str, Any] = (
        {"type": "user_member", "user_id": seg.user_id} if seg.user_id else {"type": "empty_member"}
    )
    return {
        "type": "computed_shift_assignment",
        "start_time": fmt_time(seg.start, tz),
        "end_time": fmt_time(seg.end, tz),
        "member": member,
        "source": _source(seg),
    }


def _rotation_obj(ctx: Ctx, s: Schedule, rot: Any) -> dict[str, Any]:
    tzname = s.time_zone
    tz = engine.zone(tzname)
    base = f"{ctx.rest_base}/v3/schedules/{s.id}/rotations/{rot.id}"
    return {
        "id": rot.id,
        "type": "schedule_rotation",
        "self": base,
        "events": [
            {
                "id": ev.id,
                "type": "schedule_event",
                "name": ev.name,
                "self": f"{base}/events/{ev.id}",
                "start_time": {"date_time": fmt_time(ev.start_time, tz), "time_zone": tzname},
                "end_time": {"date_time": fmt_time(ev.end_time, tz), "time_zone": tzname},
                "effective_since": fmt_time(ev.effective_since or ev.start_time, UTC),
                "effective_until": fmt_time(ev.effective_until, UTC)
                if ev.effective_until
                else None,
                "recurrence": ev.recurrence,
                "assignment_strategy": {
                    "type": ev.strategy,
                    "shifts_per_member": ev.shifts_per_member,
                    "members": [
                        {"type": "user_member", "user_id": m} if m else {"type": "empty_member"}
                        for m in ev.members
                    ],
                },
            }
            for ev in rot.events
        ],
    }


# --------------------------------------------------------------------------- auth + dispatch


def _auth_failed(detail: str) -> ApiError:
    return ApiError(401, "Authentication failed", 2006, [detail])


def authenticate(state: SimState, request: Request, region: str) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "token" and value.startswith("token="):
        key = state.keys_by_value.get(value[len("token=") :].strip('"'))
        if key is None:
            raise _auth_failed("The API key is invalid")
        acct = state.accounts[key.account_id]
        if acct.region != region:
            # the other region's API host does not know this key at all
            raise _auth_failed("The API key is invalid")
        if key.user_id is not None and key.user_id not in acct.users:
            # a deleted user's user-level API key is disabled (developer docs, OAuth page)
            raise _auth_failed("The API key is invalid")
        bucket = f"user:{acct.id}:{key.user_id}" if key.user_id else f"key:{key.label}"
        return Principal("api_key", key.label, acct, key.user_id, None, bucket)
    if scheme.lower() == "bearer" and value:
        tok = state.access_tokens.get(value)
        if tok is None or tok.revoked or tok.expires_at <= state.now():
            raise _auth_failed("The access token is invalid, expired or revoked")
        acct = state.accounts.get(tok.app.account_id)
        if acct is None or acct.region != region or tok.user_id not in acct.users:
            raise _auth_failed("The access token is invalid")
        return Principal(
            "oauth",
            tok.app.label,
            acct,
            tok.user_id,
            frozenset(tok.scopes),
            f"app:{tok.app.label}:user:{tok.user_id}",
        )
    raise _auth_failed("Missing or malformed Authorization header")


def missing_abilities(acct: Account, template: str, request: Request) -> list[tuple[str, str]]:
    """(gate, ability) pairs this request needs and the account lacks.

    A gate is a route template (it covers the routes under it too: `/v3/schedules` gates
    `/v3/schedules/{id}`) or a query parameter (gated when sent with a value)."""
    q = request.query_params
    out: list[tuple[str, str]] = []
    for gate, needed in acct.required_abilities.items():
        if gate.startswith("/"):
            base = gate.rstrip("/")
            hit = template == base or template.startswith(base + "/")
        else:
            hit = any(v != "" for v in q.getlist(gate))
        if hit:
            out += [(gate, a) for a in needed if a not in acct.abilities]
    return out


def ability_error(missing: list[tuple[str, str]]) -> ApiError:
    """402 for a request needing abilities the account lacks (tidbyt/community#810 body)."""
    names = list(dict.fromkeys(a for _, a in missing))
    details = []
    for gate, ability in missing:
        if gate == "team_ids[]" and ability == "teams":
            details.append("The teams account ability is required to filter by teams.")
        else:
            details.append(
                "The account does not have access to one or more abilities needed to complete "
                f"this request ({gate} needs the {ability} ability)."
            )
    return ApiError(
        402,
        "Required abilities are unavailable",
        ABILITY_ERROR_CODE,
        list(dict.fromkeys(details)),
        {"missing_abilities": ",".join(names)},
    )


def credential_label(state: SimState, request: Request) -> str:
    """Label for request counters; never the secret itself."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "token" and value.startswith("token="):
        key = state.keys_by_value.get(value[len("token=") :].strip('"'))
        return key.label if key else "(invalid)"
    if scheme.lower() == "bearer":
        tok = state.access_tokens.get(value)
        return tok.app.label if tok else "(invalid)"
    return "(none)"


UNAUTHORIZED_TEXT = b"<html><body><h1>401 Unauthorized</h1></body></html>"


def _unauthorized(state: SimState, err: ApiError) -> Response:
    # default: not JSON at all (go-pagerduty#553, #469); `json` mode on request
    if state.auth_error_mode == "text":
        return Response(UNAUTHORIZED_TEXT, 401, media_type="text/html")
    return err.response()


def _rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "ratelimit-limit": str(limit),
        "ratelimit-remaining": str(remaining),
        "ratelimit-reset": str(reset),
    }


def _limited(state: SimState, limit: int, reset: int) -> Response:
    if state.rate.bare_429:
        return Response(b"", 429)
    headers = _rate_headers(limit, 0, reset)
    return ApiError(429, "Rate Limit Exceeded", 2020).response(headers)


async def dispatch(
    state: SimState,
    request: Request,
    region: str,
    sub_path: str,
    matched: tuple[Route, dict[str, str]] | None,
) -> Response:
    if request.method != "GET":
        # the simulator only implements the read-only subset the integration uses
        return ApiError(
            405 if matched else 404,
            "Not Found" if not matched else "Method Not Allowed",
            2100 if not matched else None,
        ).response()
    if matched is None:
        return ApiError(404, "Not Found", 2100).response()
    rt, params = matched
    try:
        principal = authenticate(state, request, region)
    except ApiError as err:
        return _unauthorized(state, err)
    headers: dict[str, str] = {}
    if state.rate.enabled:
        ok, remaining, reset = state.take(principal.bucket)
        if not ok:
            return _limited(state, state.rate.per_minute, reset)
        headers = _rate_headers(state.rate.per_minute, remaining, reset)
        if rt.template == "/oncalls":
            # an operation-specific limit on top of the per-credential one (facts); the headers
            # then describe whichever limit is closest to being reached (developer docs,
            # "Rate limits", operation specific limits)
            per = state.rate.oncalls_per_minute
            ok, oremaining, oreset = state.take("oncalls:" + principal.bucket, per)
            if not ok:
                return _limited(state, per, oreset)
            if oremaining < remaining:
                headers = _rate_headers(per, oremaining, oreset)
    try:
        acct = principal.account
        if not acct.api_access:
            raise ApiError(
                402,
                "Payment Required",
                2012,
                ["This account's plan does not include REST API access"],
            )
        missing = missing_abilities(acct, rt.template, request)
        if missing:
            raise ability_error(missing)
        # Restricted Access users are not refused: each handler filters what they may see.
        if principal.scopes is not None:
            if rt.scope is None:
                pass  # /users/me: any user token
            elif rt.scope not in principal.scopes:
                raise ApiError(
                    403,
                    "Access Denied",
                    2010,
                    [f"The access token lacks the required scope: {rt.scope}"],
                )
        base = base_url(request) + ("/eu" if region == "eu" else "")
        ctx = Ctx(request, state, region, base, principal, params)
        resp = await rt.handler(ctx)
    except ApiError as err:
        return err.response(headers)
    resp.headers.update(headers)
    return resp

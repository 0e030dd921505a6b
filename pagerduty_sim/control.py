"""Control API under /_sim/ (not PagerDuty's surface): lets tests and benchmarks steer it."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .edits import remove_user
from .engine import oncall_segments
from .http import base_url, fmt_time, json_response
from .scenario import (
    ApiKey,
    ScenarioError,
    parse_custom_shift,
    parse_override,
    parse_required_abilities,
    parse_schedule,
    parse_time,
    parse_user,
)
from .state import SimState


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[SimState, Request, dict[str, str], dict[str, Any]], Awaitable[Any]]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def deco(fn: Handler) -> Handler:
        ROUTES.append((method, pattern, fn))
        return fn

    return deco


def _account(state: SimState, aid: str) -> Any:
    acct = state.accounts.get(aid)
    if acct is None:
        raise ControlError(f"unknown account {aid!r}", 404)
    return acct


def _schedule(state: SimState, aid: str, sid: str) -> Any:
    sched = _account(state, aid).schedules.get(sid)
    if sched is None:
        raise ControlError(f"unknown schedule {sid!r} in account {aid!r}", 404)
    return sched


def _everyone(acct: Any) -> dict[str, Any]:
    return {**acct.users, **acct.deleted_users}


def _user_ref_checker(acct: Any) -> Any:
    def check(uid: Any, where: str) -> str:
        if acct.any_user(uid) is None:
            raise ScenarioError(f"{where}: unknown user {uid!r}")
        return str(uid)

    return check


def _span(body: Any, now: Any) -> dict[str, Any]:
    """start (default now) and end, or duration_seconds (default 3600)."""
    start = parse_time(body.get("start", body.get("start_time", "now")), "start", now)
    if "end" in body or "end_time" in body:
        end = parse_time(body.get("end", body.get("end_time")), "end", now)
    else:
        end = start + timedelta(seconds=int(body.get("duration_seconds", 3600)))
    return {"start": start, "end": end}


def _urls(request: Request) -> dict[str, str]:
    base = base_url(request)
    return {
        "rest_us": base,
        "rest_eu": f"{base}/eu",
        "identity": f"{base}/identity",
        # stands for app.pagerduty.com: the host of the id_token's other documented issuer
        "app": f"{base}/app",
        "authorize": f"{base}/identity/oauth/authorize",
        "token": f"{base}/identity/oauth/token",
        "jwks": f"{base}/identity/global/oauth/anonymous/jwks",
        "control": f"{base}/_sim",
    }


# --------------------------------------------------------------------------- routes


@route("GET", "/health")
async def health(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {"ok": True, "scenario": state.scenario.name, "now": fmt_time(state.now())}


@route("GET", "/credentials")
async def credentials(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    urls = _urls(request)
    return {
        "urls": urls,
        "api_keys": [
            {
                "label": k.label,
                "key": k.key,
                "account": k.account_id,
                "region": state.accounts[k.account_id].region,
                "kind": k.kind,
                "user_id": k.user_id,
                "rest_base_url": urls["rest_eu"]
                if state.accounts[k.account_id].region == "eu"
                else urls["rest_us"],
            }
            for k in state.scenario.api_keys
        ],
        "oauth_apps": [
            {
                "label": a.label,
                "client_id": a.client_id,
                "client_secret": a.client_secret,
                "scopes": a.scopes,
                "redirect_uris": a.redirect_uris,
                "account": a.account_id,
                "region": state.accounts[a.account_id].region,
                "authorize_as": a.authorize_as,
            }
            for a in state.scenario.oauth_apps
        ],
    }


@route("GET", "/scenario")
async def scenario_summary(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {
        "name": state.scenario.name,
        "accounts": [
            {
                "id": a.id,
                "subdomain": a.subdomain,
                "region": a.region,
                "api_access": a.api_access,
                "abilities": a.abilities,
                "users": len(a.users),
                "schedules": len(a.schedules),
                "escalation_policies": len(a.escalation_policies),
            }
            for a in state.accounts.values()
        ],
    }


@route("PUT", "/scenario")
async def scenario_load(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """Body: {"name": "demo"} | {"path": "/x.yaml"} | {"scenario": {...}}."""
    source = body.get("scenario") or body.get("path") or body.get("name")
    if source is None:
        raise ControlError("give 'name', 'path' or 'scenario'")
    try:
        state.load(source)
    except ScenarioError as exc:
        raise ControlError(str(exc)) from exc
    return await scenario_summary(state, request, p, body)


@route("POST", "/reset")
async def reset(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    state.reset()
    return {"ok": True}


@route("PATCH", "/accounts/{account}")
async def patch_account(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """{"api_access"?, "abilities"?, "required_abilities"?}. required_abilities is merged into
    the account's gates; a gate mapped to null or [] is removed."""
    acct = _account(state, p["account"])
    if "api_access" in body:
        acct.api_access = bool(body["api_access"])
    if "abilities" in body:
        acct.abilities = [str(a) for a in body["abilities"]]
    if "required_abilities" in body:
        try:
            gates = parse_required_abilities(body["required_abilities"], "required_abilities")
        except ScenarioError as exc:
            raise ControlError(str(exc)) from exc
        for gate, needed in gates.items():
            if needed:
                acct.required_abilities[gate] = needed
            else:
                acct.required_abilities.pop(gate, None)
    return {
        "id": acct.id,
        "api_access": acct.api_access,
        "abilities": acct.abilities,
        "required_abilities": acct.required_abilities,
    }


@route("POST", "/accounts/{account}/users")
async def add_user(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    acct = _account(state, p["account"])
    data = dict(body)
    data.setdefault("id", state.new_id("PU"))
    try:
        user = parse_user(data, "user", state.now())
    except ScenarioError as exc:
        raise ControlError(str(exc)) from exc
    if acct.any_user(user.id) is not None:
        raise ControlError(f"user {user.id!r} already exists", 409)
    (acct.deleted_users if user.deleted_at else acct.users)[user.id] = user
    return {"id": user.id, "name": user.name, "email": user.email, "role": user.role}


@route("PATCH", "/accounts/{account}/users/{user}")
async def patch_user(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    acct = _account(state, p["account"])
    user = acct.users.get(p["user"])
    if user is None:
        raise ControlError(f"unknown user {p['user']!r}", 404)
    for field in ("name", "email", "role", "time_zone", "job_title"):
        if field in body:
            setattr(user, field, str(body[field]))
    return {"id": user.id, "name": user.name, "email": user.email, "role": user.role}


@route("DELETE", "/accounts/{account}/users/{user}")
async def delete_user(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """Delete a user from the account. Like PagerDuty, they vanish from GET /users (and
    /users/{id} answers 404) but stay on schedules and escalation policies as "inactive"
    placeholders with a `deleted_at`; their user-level keys and OAuth tokens stop working."""
    acct = _account(state, p["account"])
    uid = p["user"]
    user = acct.users.pop(uid, None)
    if user is None:
        raise ControlError(f"unknown user {uid!r}", 404)
    user.deleted_at = state.now()
    acct.deleted_users[uid] = user
    return {"deleted": uid, "deleted_at": fmt_time(user.deleted_at)}


@route("DELETE", "/accounts/{account}/schedules/{schedule}/users/{user}")
async def remove_schedule_user(
    state: SimState, request: Request, p: dict[str, str], body: Any
) -> Any:
    """Take a user off a schedule effective now (optionally ?layer_id= or ?rotation_id= only).
    Past entries keep the user; entries from now on do not (see pagerduty_sim.edits)."""
    acct = _account(state, p["account"])
    sched = _schedule(state, p["account"], p["schedule"])
    uid = p["user"]
    if acct.any_user(uid) is None:
        raise ControlError(f"unknown user {uid!r}", 404)
    q = request.query_params
    layer_id, rotation_id = q.get("layer_id"), q.get("rotation_id")
    if layer_id and layer_id not in {la.id for la in sched.layers}:
        raise ControlError(f"unknown layer {layer_id!r}", 404)
    if rotation_id and rotation_id not in {r.id for r in sched.rotations}:
        raise ControlError(f"unknown rotation {rotation_id!r}", 404)
    now = state.now()
    res = remove_user(
        sched, uid, now, lambda: state.new_id("PL"), layer_id=layer_id, rotation_id=rotation_id
    )
    if not res.changed:
        raise ControlError(f"user {uid!r} is not on schedule {sched.id!r} from now on", 404)
    acct.invalidate()
    return {"schedule": sched.id, "user_id": uid, "effective": fmt_time(now), **vars(res)}


@route("POST", "/accounts/{account}/schedules")
async def add_schedule(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    acct = _account(state, p["account"])
    data = dict(body)
    data.setdefault("id", state.new_id("PS"))
    try:
        sched = parse_schedule(data, "schedule", state.now(), _everyone(acct))
    except ScenarioError as exc:
        raise ControlError(str(exc)) from exc
    if sched.id in acct.schedules:
        raise ControlError(f"schedule {sched.id!r} already exists", 409)
    acct.schedules[sched.id] = sched
    acct.invalidate()
    return {"id": sched.id, "name": sched.name, "version": sched.version}


@route("POST", "/accounts/{account}/schedules/{schedule}/overrides")
async def add_override(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """Put a user on call: {"user_id", "start"?="now", "end"? | "duration_seconds"?=3600}.

    On a v3 schedule with rotations the override replaces one member of one source:
    + "rotation_id" | "custom_shift_id" (optional when the schedule has a single rotation and
    no custom shift) and "overridden_user_id"? (the member replaced; absent = whoever that
    source has during the span)."""
    acct = _account(state, p["account"])
    sched = _schedule(state, p["account"], p["schedule"])
    now = state.now()
    data = {k: v for k, v in body.items() if k not in ("duration_seconds",)}
    try:
        data.update(_span(body, now))
        ov = parse_override(
            data,
            "override",
            now,
            str(body.get("id") or state.new_id("PO")),
            sched,
            _user_ref_checker(acct),
        )
    except ScenarioError as exc:
        raise ControlError(str(exc)) from exc
    sched.overrides.append(ov)
    out: dict[str, Any] = {
        "id": ov.id,
        "start": fmt_time(ov.start),
        "end": fmt_time(ov.end),
        "user_id": ov.user_id,
    }
    if ov.rotation_id or ov.custom_shift_id:
        out.update(
            rotation_id=ov.rotation_id,
            custom_shift_id=ov.custom_shift_id,
            overridden_user_id=ov.overridden_user_id if ov.overridden_given else None,
        )
    return out


@route("POST", "/accounts/{account}/schedules/{schedule}/custom_shifts")
async def add_custom_shift(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """v3 only: one extra responder. {"user_id", "start"?="now", "end"? | "duration_seconds"?}."""
    acct = _account(state, p["account"])
    sched = _schedule(state, p["account"], p["schedule"])
    if sched.version != 3 or not sched.rotations:
        raise ControlError("custom shifts belong to v3 schedules with rotations")
    now = state.now()
    data = {k: v for k, v in body.items() if k not in ("duration_seconds",)}
    try:
        data.update(_span(body, now))
        cs = parse_custom_shift(
            data, "custom_shift", now, state.new_id("PC"), _user_ref_checker(acct)
        )
    except ScenarioError as exc:
        raise ControlError(str(exc)) from exc
    if cs.id in {c.id for c in sched.custom_shifts}:
        raise ControlError(f"custom shift {cs.id!r} already exists", 409)
    sched.custom_shifts.append(cs)
    return {
        "id": cs.id,
        "start": fmt_time(cs.start),
        "end": fmt_time(cs.end),
        "user_id": cs.user_id,
    }


@route("DELETE", "/accounts/{account}/schedules/{schedule}/custom_shifts/{shift}")
async def delete_custom_shift(
    state: SimState, request: Request, p: dict[str, str], body: Any
) -> Any:
    sched = _schedule(state, p["account"], p["schedule"])
    before = len(sched.custom_shifts)
    sched.custom_shifts = [c for c in sched.custom_shifts if c.id != p["shift"]]
    if len(sched.custom_shifts) == before:
        raise ControlError(f"unknown custom shift {p['shift']!r}", 404)
    return {"deleted": p["shift"]}


@route("DELETE", "/accounts/{account}/schedules/{schedule}/overrides/{override}")
async def delete_override(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    sched = _schedule(state, p["account"], p["schedule"])
    before = len(sched.overrides)
    sched.overrides = [o for o in sched.overrides if o.id != p["override"]]
    if len(sched.overrides) == before:
        raise ControlError(f"unknown override {p['override']!r}", 404)
    return {"deleted": p["override"]}


@route("POST", "/accounts/{account}/schedules/{schedule}/upgrade")
async def upgrade(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """Make a schedule v3. Optional body {"rotations": [...], "custom_shifts"?: [...],
    "overrides"?: [...]} replaces its rules with v3 events. Its existing overrides then target
    the single new rotation, or are dropped when there are several."""
    acct = _account(state, p["account"])
    sched = _schedule(state, p["account"], p["schedule"])
    if body.get("rotations"):
        data = {
            "id": sched.id,
            "name": sched.name,
            "time_zone": sched.time_zone,
            "version": 3,
            "rotations": body["rotations"],
            "custom_shifts": body.get("custom_shifts") or [],
            "overrides": body.get("overrides") or [],
        }
        try:
            parsed = parse_schedule(data, "upgrade", state.now(), _everyone(acct))
        except ScenarioError as exc:
            raise ControlError(str(exc)) from exc
        kept = []
        if len(parsed.rotations) == 1 and not parsed.custom_shifts:
            for ov in sched.overrides:
                ov.rotation_id = parsed.rotations[0].id
                kept.append(ov)
        sched.rotations = parsed.rotations
        sched.custom_shifts = parsed.custom_shifts
        sched.overrides = kept + parsed.overrides
        sched.layers = []
    sched.version = 3
    return {"id": sched.id, "version": 3}


@route("GET", "/accounts/{account}/schedules/{schedule}/oncall")
async def who_is_on_call(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """Convenience for tests: user ids on call now (or at ?at=...)."""
    sched = _schedule(state, p["account"], p["schedule"])
    at = parse_time(request.query_params.get("at", "now"), "at", state.now())
    segs = oncall_segments(sched, at, at + timedelta(seconds=1))
    return {"user_ids": sorted({s.user_id for s in segs if s.start <= at < s.end and s.user_id})}


@route("POST", "/api_keys")
async def add_api_key(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    try:
        key = ApiKey(
            str(body["label"]),
            str(body["key"]),
            str(body["account"]),
            str(body.get("kind", "account")),
            body.get("user_id"),
        )
    except KeyError as exc:
        raise ControlError(f"missing field {exc}") from exc
    _account(state, key.account_id)
    if key.label in state.keys_by_label or key.key in state.keys_by_value:
        raise ControlError("duplicate api key label or value", 409)
    state.scenario.api_keys.append(key)
    state.keys_by_label[key.label] = key
    state.keys_by_value[key.key] = key
    return {"label": key.label}


@route("POST", "/api_keys/{label}/revoke")
async def revoke_api_key(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    key = state.keys_by_label.pop(p["label"], None)
    if key is None:
        raise ControlError(f"unknown api key label {p['label']!r}", 404)
    state.keys_by_value.pop(key.key, None)
    state.scenario.api_keys = [k for k in state.scenario.api_keys if k.label != key.label]
    return {"revoked": key.label}


def _token_op(state: SimState, body: Any, op: str) -> Any:
    try:
        toks = state.select_tokens(body)
    except ValueError as exc:
        raise ControlError(str(exc)) from exc
    now = state.now()
    for t in toks:
        if op == "expire":
            t.expires_at = now - timedelta(seconds=1)
        else:
            t.revoked = True
    return {op + "d": len(toks)}


@route("POST", "/tokens/expire")
async def expire_tokens(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return _token_op(state, body, "expire")


@route("POST", "/tokens/revoke")
async def revoke_tokens(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return _token_op(state, body, "revoke")


@route("POST", "/oauth_apps/{label}/revoke_all")
async def revoke_all_tokens(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """PagerDuty's "Revoke All Tokens" (App Registration UI): every token of the app dies."""
    if p["label"] not in state.apps_by_label:
        raise ControlError(f"unknown OAuth app {p['label']!r}", 404)
    return _token_op(state, {"app": p["label"]}, "revoke")


@route("GET", "/tokens")
async def list_tokens(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    now = state.now()

    def show(t: Any) -> dict[str, Any]:
        return {
            "kind": t.kind,
            "app": t.app.label,
            "account": t.app.account_id,
            "user_id": t.user_id,
            "scopes": t.scopes,
            "expires_at": fmt_time(t.expires_at),
            "valid": not t.revoked and not t.rotated and t.expires_at > now,
            "grant_id": t.grant_id,
            "delegation_id": t.grant_id,
            "authorized_at": fmt_time(t.authorized_at),
            "revoked": t.revoked,
        }

    return {
        "tokens": [show(t) for t in [*state.access_tokens.values(), *state.refresh_tokens.values()]]
    }


@route("GET", "/clock")
async def get_clock(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {"now": fmt_time(state.now()), "offset_seconds": state.clock_offset}


@route("POST", "/clock")
async def set_clock(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """{"advance_seconds": N} moves the clock forward; {"offset_seconds": N} sets it."""
    if "offset_seconds" in body:
        state.clock_offset = float(body["offset_seconds"])
    if "advance_seconds" in body:
        state.clock_offset += float(body["advance_seconds"])
    return await get_clock(state, request, p, body)


@route("GET", "/faults")
async def list_faults(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {"faults": [f.public() for f in state.faults]}


@route("POST", "/faults")
async def add_fault(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    try:
        rule = state.add_fault(body)
    except (TypeError, ValueError) as exc:
        raise ControlError(str(exc)) from exc
    return rule.public()


@route("DELETE", "/faults")
async def clear_faults(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    n = len(state.faults)
    state.faults.clear()
    return {"deleted": n}


@route("DELETE", "/faults/{id}")
async def delete_fault(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    before = len(state.faults)
    state.faults[:] = [f for f in state.faults if str(f.id) != p["id"]]
    if len(state.faults) == before:
        raise ControlError(f"unknown fault {p['id']}", 404)
    return {"deleted": 1}


@route("GET", "/rate_limit")
async def get_rate(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    r = state.rate
    return {
        "per_minute": r.per_minute,
        "oncalls_per_minute": r.oncalls_per_minute,
        "enabled": r.enabled,
        "bare_429": r.bare_429,
    }


@route("POST", "/rate_limit")
async def set_rate(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    """{"per_minute"?, "oncalls_per_minute"?, "enabled"?, "bare_429"?}; starts fresh windows."""
    for key in ("per_minute", "oncalls_per_minute"):
        if key in body:
            if int(body[key]) < 1:
                raise ControlError(f"{key} must be >= 1")
            setattr(state.rate, key, int(body[key]))
    if "enabled" in body:
        state.rate.enabled = bool(body["enabled"])
    if "bare_429" in body:
        state.rate.bare_429 = bool(body["bare_429"])
    state.buckets.clear()
    return await get_rate(state, request, p, body)


@route("POST", "/rate_limit/reset")
async def reset_rate(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    state.buckets.clear()
    return {"ok": True}


@route("GET", "/stats")
async def stats(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return state.stats()


@route("POST", "/stats/reset")
async def reset_stats(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    state.reset_stats()
    return {"ok": True}


@route("GET", "/requests")
async def recent_requests(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {"requests": list(state.recent)}


@route("GET", "/settings")
async def get_settings(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    return {
        "auto_approve": state.auto_approve,
        "auth_error_mode": state.auth_error_mode,
        "id_token_issuer": state.oidc_issuer,
        "echo_state": state.echo_state,
        "latency_ms": state.latency_ms,
        "access_token_ttl": state.access_ttl,
        "refresh_token_ttl": state.refresh_ttl,
        "code_ttl": state.code_ttl,
        "refresh_window": state.refresh_window,
    }


@route("POST", "/settings")
async def set_settings(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    if "auto_approve" in body:
        state.auto_approve = bool(body["auto_approve"])
    if "auth_error_mode" in body:
        if body["auth_error_mode"] not in ("json", "text"):
            raise ControlError("auth_error_mode must be 'json' or 'text'")
        state.auth_error_mode = body["auth_error_mode"]
    if "echo_state" in body:
        state.echo_state = bool(body["echo_state"])
    if "id_token_issuer" in body:
        issuer = str(body["id_token_issuer"])
        if issuer not in ("identity", "app") and not issuer.startswith(("http://", "https://")):
            raise ControlError("id_token_issuer must be 'identity', 'app' or an http(s) URL")
        state.oidc_issuer = issuer
    if "latency_ms" in body:
        state.latency_ms = int(body["latency_ms"])
    for key, attr in (
        ("access_token_ttl", "access_ttl"),
        ("refresh_token_ttl", "refresh_ttl"),
        ("code_ttl", "code_ttl"),
        ("refresh_window", "refresh_window"),
    ):
        if key in body:
            setattr(state, attr, int(body[key]))
    return await get_settings(state, request, p, body)


@route("POST", "/auto_approve")
async def set_auto_approve(state: SimState, request: Request, p: dict[str, str], body: Any) -> Any:
    state.auto_approve = bool(body.get("enabled", True))
    return {"auto_approve": state.auto_approve}


# --------------------------------------------------------------------------- dispatch


async def dispatch(state: SimState, request: Request, sub_path: str) -> Response:
    method = request.method
    params: dict[str, str] | None = None
    handler: Handler | None = None
    path_known = False
    for m, pattern, fn in ROUTES:
        mt = pattern.match(sub_path)
        if mt:
            path_known = True
            if m == method:
                handler, params = fn, mt.groupdict()
                break
    if handler is None or params is None:
        return json_response(
            {"error": "method not allowed" if path_known else "no such control route"},
            405 if path_known else 404,
        )
    body: Any = {}
    raw = await request.body()
    if raw:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return json_response({"error": "body must be JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "body must be a JSON object"}, 400)
    try:
        return json_response(await handler(state, request, params, body))
    except ControlError as exc:
        return json_response({"error": str(exc)}, exc.status)
    except (ValueError, TypeError, KeyError) as exc:
        return json_response({"error": f"bad request: {exc}"}, 400)

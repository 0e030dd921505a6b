"""The panel's on-call report page (``GET /panel/on-call-report``): a period picker, a table and
a bar chart per person, for the workspace's Primary Owner and Admins; the same rows as CSV at
``/panel/on-call-report.csv``. Dates are whole days in the workspace's time zone; the numbers are
``workers.reports.on_call``'s, the API's. See docs/panel.md."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api_stub.panel.page import ROLE_WORDS, TEMPLATES
from api_stub.panel.session import (
    CSRF_COOKIE,
    check_csrf,
    csrf_token_for,
    current_actor,
    page_response,
    read_form,
    redirect_to_panel,
    subject_of,
)
from models import Member, Rotation, utcnow
from workers.core.access import Actor, ServiceError
from workers.core.db import snapshot, transaction
from workers.core.ids import parse_uuid
from workers.reports import on_call
from workers.reports.zone import known_zones, set_workspace_zone, workspace_zone, zone_named

router = APIRouter(prefix="/panel", include_in_schema=False)

DEFAULT_DAYS = 30
NOT_MANAGER_WORDS = "Only the workspace's Primary Owner or an Admin can see the on-call report."


def duration_words(seconds: int) -> str:
    """``12 h 05 min`` (whole minutes, rounded down); under a minute, ``45 s``."""
    if 0 < seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours:,} h {rest // 60:02d} min"


def _day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        raise ServiceError("Dates must look like 2026-12-31.", code="invalid_date") from None


def _period(zone: str, q: Any, now: datetime) -> tuple[date, date, datetime, datetime]:
    """The chosen days (``until`` included), and the instants they span in ``zone``."""
    tz = zone_named(zone)
    today = now.astimezone(tz).date()
    last = _day(q.get("until")) or today
    first = _day(q.get("since")) or last - timedelta(days=DEFAULT_DAYS - 1)
    since = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    until = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return first, last, since, until


def _report(actor: Actor, q: Any) -> dict[str, Any]:
    now = utcnow()
    ctx: dict[str, Any] = {"error": None, "report": None, "rotations": [], "rotation_id": ""}
    with snapshot() as session:
        zone = workspace_zone(session, actor.workspace_id)
        ctx["zone"] = zone
        ctx["rotations"] = [
            {"id": str(rid), "name": name}
            for rid, name in session.execute(
                select(Rotation.id, Rotation.name)
                .where(Rotation.workspace_id == actor.workspace_id)
                .order_by(Rotation.name)
            )
        ]
        rotation_id: uuid.UUID | None = None
        if q.get("rotation_id"):
            rotation_id = parse_uuid(q.get("rotation_id"))
            ctx["rotation_id"] = str(rotation_id) if rotation_id else ""
        try:
            first, last, since, until = _period(zone, q, now)
            ctx["since_day"], ctx["until_day"] = first.isoformat(), last.isoformat()
            if q.get("rotation_id") and rotation_id is None:
                raise ServiceError("No such rotation in this workspace.")
            ctx["report"] = on_call.on_call_report(
                session, actor, since=since, until=until, rotation_id=rotation_id, now=now
            )
        except ServiceError as exc:
            ctx["error"] = exc.message
            ctx.setdefault("since_day", q.get("since", ""))
            ctx.setdefault("until_day", q.get("until", ""))
    report = ctx["report"]
    if report is not None:
        top = max((p.split.total for p in report.people), default=0) or 1
        ctx["rows"] = [_row(p, top) for p in report.people]
        ctx["total_words"] = duration_words(sum(p.split.total for p in report.people))
    return ctx


def _row(person: on_call.PersonTotals, top: int) -> dict[str, Any]:
    s = person.split
    business = s.total - s.outside_business
    evenings = s.outside_business - s.weekend  # outside business hours on weekdays
    return {
        "person": person,
        "total": duration_words(s.total),
        "outside": duration_words(s.outside_business),
        "weekend": duration_words(s.weekend),
        # Widths in percent of the longest bar; three segments that add up to the bar.
        "bars": [
            ("business", round(100 * business / top, 2)),
            ("evenings", round(100 * evenings / top, 2)),
            ("weekend", round(100 * s.weekend / top, 2)),
        ],
    }


@router.get("/on-call-report", response_class=HTMLResponse)
def report_page(request: Request) -> Response:
    actor = current_actor(request)
    if actor is None:
        return redirect_to_panel()
    return _render(request, actor, request.query_params)


def _render(request: Request, actor: Actor, q: Any, *, zone_error: str | None = None) -> Response:
    ctx: dict[str, Any] = {"actor": actor, "role_words": ROLE_WORDS, "error": None}
    status = 200
    if not actor.may_manage:
        ctx["error"], status = NOT_MANAGER_WORDS, 403
    else:
        ctx.update(_report(actor, q))
        status = 400 if ctx["error"] else 200
    if zone_error:
        ctx["zone_error"] = zone_error
        status = 403 if status == 403 else 422
    with snapshot() as session:
        member = session.get(Member, actor.member_id)
        ctx["actor_name"] = member.display_name if member else ""
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    ctx["csrf_token"] = csrf_token_for(nonce, subject_of(actor))
    ctx["zones"] = known_zones()
    script_nonce = secrets.token_urlsafe(16)
    html = TEMPLATES.get_template("on_call_report.html").render(**ctx)
    # The same CSRF cookie as the panel's: the time zone form's token.
    return page_response(html, script_nonce, nonce, status)


@router.post("/on-call-report/time-zone")
async def save_time_zone(request: Request) -> Response:
    """The workspace's time zone, from the report page (Primary Owner or Admin)."""
    form = await read_form(request)
    actor = await run_in_threadpool(current_actor, request)
    check_csrf(request, form, actor)
    if actor is None:
        return redirect_to_panel()
    back = {k: form.get(k, "") for k in ("since", "until", "rotation_id")}

    def run() -> str | None:
        try:
            with transaction() as session:
                set_workspace_zone(session, actor, form.get("time_zone", ""))
        except ServiceError as exc:
            return exc.message
        return None

    refused = await run_in_threadpool(run)
    if refused:
        return await run_in_threadpool(_render, request, actor, back, zone_error=refused)
    query = urlencode({k: v for k, v in back.items() if v})
    return RedirectResponse(f"/panel/on-call-report{'?' + query if query else ''}", 303)


@router.get("/on-call-report.csv")
def report_csv(request: Request) -> Response:
    actor = current_actor(request)
    if actor is None:
        return redirect_to_panel()
    if not actor.may_manage:
        return Response(NOT_MANAGER_WORDS, status_code=403, media_type="text/plain")
    ctx = _report(actor, request.query_params)
    if ctx["error"]:
        return Response(ctx["error"], status_code=400, media_type="text/plain")
    report = ctx["report"]
    name = f"on-call-report-{ctx['since_day']}-{ctx['until_day']}.csv"
    return Response(
        on_call.csv_text(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

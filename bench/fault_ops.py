"""What ``bench_fault_suite.py`` does to one workspace, over the real API, and how it tells the
work converged (read from the database, as ``rrpd attention`` would).

The four kinds of work that carry a deadline (docs/operations.md, "Deadlines"):

* ``validate``: ``PUT .../pagerduty/api-key``; converged once the connection is ``connected``.
* ``exchange``: an OAuth login as a browser makes it: ``POST .../pagerduty/oauth``, the
  simulator's consent page (``GET`` the authorization URL, ``POST`` its form with
  ``decision=approve``), then its redirect to our callback. Converged once ``connected``. A
  login whose exchange died holding the single-use code ends ``invalid`` with "log in with
  OAuth 2.0 again" (by design: the code is spent); the admin logs in again, as told, and the
  time runs on from the first callback (``relogins`` counts them).
* ``sync``: ``POST .../pagerduty/sync``; converged once the request is answered: its
  ``sync_requested_at`` cleared and a sync run that started after it recorded.
* ``disconnect``: ``DELETE .../pagerduty``; converged once ``disconnected`` with no rotation
  of the workspace left bound to PagerDuty.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

KINDS = ("validate", "exchange", "sync", "disconnect")
QUEUE = {
    "validate": "interactive",
    "exchange": "interactive",
    "sync": "sync",
    "disconnect": "interactive",
}
MAX_LOGINS = 3
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


class NotConverged(Exception):
    """The work ended somewhere else than where it should (or never ended)."""


@dataclass
class Workspace:
    workspace_id: uuid.UUID
    admin_id: uuid.UUID
    rotation_id: uuid.UUID
    headers: dict[str, str]


@dataclass
class Outcome:
    """One piece of work: when it was asked for (monotonic), when it converged, or why not."""

    kind: str
    workspace_id: uuid.UUID
    asked: float
    done: float | None = None
    error: str | None = None
    relogins: int = 0
    first_end: float | None = None  # exchange: the first login ended (connected or invalid)
    requested: datetime | None = None  # sync: the request the run must start after
    task_id: str | None = None  # the message the request published

    @property
    def seconds(self) -> float | None:
        return None if self.done is None else self.done - self.asked


@dataclass
class Ops:
    api: str  # http://host:port
    api_key: str
    oauth_app: dict[str, str]
    give_up: float = 120.0
    poll: float = 0.25
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=30, follow_redirects=False)
    )

    def _url(self, ws: Workspace, tail: str = "") -> str:
        return f"{self.api}/v1/workspaces/{ws.workspace_id}/pagerduty{tail}"

    # --- asking -------------------------------------------------------------------------------

    def ask_validate(self, ws: Workspace) -> tuple[float, str]:
        r = self.http.put(
            self._url(ws, "/api-key"), json={"api_key": self.api_key}, headers=ws.headers
        )
        assert r.status_code == 202, r.text
        return time.monotonic(), str(r.json()["task_id"])

    def ask_exchange(self, ws: Workspace) -> tuple[float, str]:
        """One OAuth login up to the callback's answer (which publishes the exchange)."""
        start = self.http.post(
            self._url(ws, "/oauth"),
            json={
                "client_id": self.oauth_app["client_id"],
                "client_secret": self.oauth_app["client_secret"],
                "region": "us",
            },
            headers=ws.headers,
        )
        assert start.status_code == 201, start.text
        page = self.http.get(start.json()["authorization_url"])
        assert page.status_code == 200, f"consent page: {page.status_code} {page.text[:200]}"
        action = _ACTION.search(page.text)
        assert action is not None, "no consent form"
        form = dict(_HIDDEN.findall(page.text))
        consent = self.http.post(action.group(1), data={**form, "decision": "approve"})
        assert consent.status_code in (302, 303), consent.text
        callback = consent.headers["location"]
        assert "code=" in callback, callback
        landing = self.http.get(callback)
        assert landing.status_code == 303, landing.text
        at = time.monotonic()
        query = parse_qs(urlsplit(landing.headers["location"]).query)
        assert query.get("pagerduty") == ["connecting"], landing.headers["location"]
        return at, query["task_id"][0]

    def ask_sync(self, ws: Workspace) -> tuple[float, str]:
        r = self.http.post(self._url(ws, "/sync"), headers=ws.headers)
        assert r.status_code == 202, r.text
        return time.monotonic(), str(r.json()["task_id"])

    def ask_disconnect(self, ws: Workspace) -> tuple[float, str]:
        r = self.http.delete(self._url(ws), headers=ws.headers)
        assert r.status_code == 202, r.text
        return time.monotonic(), str(r.json()["task_id"])

    def ask(self, kind: str, ws: Workspace) -> Outcome:
        from models import utcnow

        before = utcnow()  # the request's instant is later: a run must start after it
        asked, task_id = getattr(self, f"ask_{kind}")(ws)
        requested = before if kind == "sync" else None
        return Outcome(kind, ws.workspace_id, asked, requested=requested, task_id=task_id)

    def bind(self, ws: Workspace, schedule_id: str) -> None:
        """Bind the workspace's rotation (the schedule is mirrored once a sync has run)."""
        url = f"{self.api}/v1/workspaces/{ws.workspace_id}/rotations/{ws.rotation_id}"
        deadline = time.monotonic() + self.give_up
        while True:
            r = self.http.put(
                f"{url}/pagerduty-schedule", json={"schedule_id": schedule_id}, headers=ws.headers
            )
            if r.status_code == 202:
                return
            if time.monotonic() > deadline:
                raise NotConverged(f"bind: {r.status_code} {r.text[:200]}")
            time.sleep(1.0)

    # --- waiting ------------------------------------------------------------------------------

    def wait(self, out: Outcome, ws: Workspace) -> Outcome:
        """Poll until ``out``'s work converged (``done`` set) or gave up (``error`` set)."""
        while True:
            now = time.monotonic()
            row = _row(ws.workspace_id)
            try:
                if _converged(out.kind, row, out.requested):
                    out.done = now
                    if out.first_end is None:
                        out.first_end = now
                    return out
                if out.kind == "exchange" and row["status"] == "invalid":
                    out.first_end = out.first_end or now
                    if "log in with OAuth 2.0 again" not in (row["last_error"] or ""):
                        raise NotConverged(f"exchange ended invalid: {row['last_error']}")
                    if out.relogins + 1 >= MAX_LOGINS:
                        raise NotConverged(f"{MAX_LOGINS} logins ended invalid")
                    out.relogins += 1  # the admin logs in again, as the message says
                    self.ask_exchange(ws)
                    continue
                if out.kind == "validate" and row["status"] == "invalid":
                    raise NotConverged(f"validation ended invalid: {row['last_error']}")
            except (NotConverged, AssertionError, httpx.HTTPError) as exc:
                out.error = str(exc)[:300]
                return out
            if now - out.asked > self.give_up:
                out.error = f"not converged after {self.give_up:.0f} s: {row}"
                return out
            time.sleep(self.poll)


def _row(workspace_id: uuid.UUID) -> dict[str, Any]:
    """The workspace's live connection (the newest), its bound rotations and its newest run."""
    from sqlalchemy import func, select

    from models import PagerDutyConnection, Rotation, RotationMode, SyncRun
    from workers.core.db import transaction

    with transaction() as s:
        conn = s.execute(
            select(PagerDutyConnection)
            .where(PagerDutyConnection.workspace_id == workspace_id)
            .order_by(PagerDutyConnection.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        bound = s.scalar(
            select(func.count())
            .select_from(Rotation)
            .where(Rotation.workspace_id == workspace_id, Rotation.mode == RotationMode.PAGERDUTY)
        )
        last_run = (
            None
            if conn is None
            else s.scalar(
                select(func.max(SyncRun.started_at)).where(SyncRun.connection_id == conn.id)
            )
        )
        return {
            "status": None if conn is None else str(conn.status),
            "last_error": None if conn is None else conn.last_error,
            "sync_requested_at": None if conn is None else conn.sync_requested_at,
            "drive_at": None if conn is None else conn.drive_at,
            "drives": None if conn is None else conn.drives,
            "bound_rotations": int(bound or 0),
            "last_run_started_at": last_run,
        }


def _converged(kind: str, row: dict[str, Any], requested: datetime | None) -> bool:
    if kind in ("validate", "exchange"):
        return bool(row["status"] == "connected")
    if kind == "sync":
        ran = row["last_run_started_at"]
        return (
            row["status"] == "connected"
            and row["sync_requested_at"] is None
            and ran is not None
            and (requested is None or ran >= requested)
        )
    return bool(row["status"] == "disconnected" and row["bound_rotations"] == 0)

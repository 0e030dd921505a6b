"""``rrpd demo``: the help article's three walkthroughs, end to end, without a person.

1. Connect with an API key, bind rotations to the demo schedules, see them filled from
   PagerDuty; put someone else on call in the simulator and see the rotation follow (sync now).
2. Connect with OAuth 2.0 through the simulator's consent page (its HTML form, driven over
   HTTP, is where a person would click Authorize) and see the connection switch to OAuth.
3. Disconnect, and see every bound rotation back on Manual.

It talks to a running stack (``rrpd run``; ``--api-url``/``--sim-url``) through the public HTTP
API with a token for the demo workspace's Primary Owner, which it makes like ``rrpd token``
(so it needs the same configuration as that stack: database and ``var/``). ``--start`` runs its
own stack (``rrpd run`` on free ports, a fresh SQLite database, its own Redis key prefix) and
stops it afterwards. Each step is printed with what it checked; the exit status is 1 if any
step fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import httpx

from rrpd.common import checked_settings
from rrpd.dev.clock import at_option, pin_clock
from rrpd.dev.seed import DEMO_BINDINGS, MANUAL_ONLY, WORKSPACE_NAME

DEMO_ACCOUNT = "acme"
API_KEY_LABEL = "demo-readonly"
OAUTH_APP_LABEL = "demo-oauth"
OWNER_EMAIL = "alice@example.com"


class StepFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def wait_for(what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy; its last value explains a timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Demo:
    api_url: str
    sim_url: str
    timeout: float = 60.0
    out: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        self.sim_url = self.sim_url.rstrip("/")
        self.http = httpx.Client(timeout=15)
        self.steps_ok = 0
        self.failed: str | None = None

    # --- plumbing -------------------------------------------------------------------------------

    def step(self, number: str, title: str, fn: Callable[[], str]) -> None:
        if self.failed:
            return
        started = time.monotonic()
        try:
            verified = fn()
        except (StepFailed, httpx.HTTPError) as exc:
            self.failed = f"{number} {title}: {exc}"
            self.out(f"  [FAIL] {number} {title}\n         {exc}")
            return
        self.steps_ok += 1
        took = time.monotonic() - started
        self.out(f"  [ok]   {number} {title} ({took:.1f} s)\n         {verified}")

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(
            method, f"{self.api_url}{path}", headers={"Authorization": f"Bearer {self.token}"}, **kw
        )

    def sim(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, f"{self.sim_url}/_sim{path}", **kw)
        r.raise_for_status()
        return r

    def status(self) -> dict[str, Any]:
        r = self.api("GET", f"/v1/workspaces/{self.ws}/pagerduty")
        r.raise_for_status()
        return r.json()

    def rotations(self) -> dict[str, dict[str, Any]]:
        r = self.api("GET", f"/v1/workspaces/{self.ws}/rotations")
        r.raise_for_status()
        return {x["name"]: x for x in r.json()["rotations"]}

    def wait_status(self, leave: set[str]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            body = self.status()
            # A new credential over a connected connection is checked beside it ("pending").
            checking = (body.get("pending") or {}).get("status") == "checking"
            return None if body["status"] in leave or checking else body

        return wait_for(f"the connection to leave {sorted(leave)}", probe, timeout=self.timeout)

    def oncall_emails(self, schedule_id: str) -> set[str]:
        ids = self.sim("GET", f"/accounts/{DEMO_ACCOUNT}/schedules/{schedule_id}/oncall").json()
        return {self.user_emails[u] for u in ids["user_ids"]}

    # --- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> str:
        from api_stub.auth import issue_token
        from rrpd.dev.seed import seed

        health = self.http.get(f"{self.api_url}/healthz")
        check(health.status_code == 200, f"API at {self.api_url} answered {health.status_code}")
        sim = self.sim("GET", "/health").json()
        seeded = seed()
        self.ws = seeded.workspace_id
        self.rotation_ids = seeded.rotations
        self.owner = seeded.members[OWNER_EMAIL]
        self.token = issue_token(self.ws, self.owner, "primary_owner", ttl_seconds=3600)
        creds = self.sim("GET", "/credentials").json()
        self.api_key = next(k["key"] for k in creds["api_keys"] if k["label"] == API_KEY_LABEL)
        self.oauth_app = next(a for a in creds["oauth_apps"] if a["label"] == OAUTH_APP_LABEL)
        users = self.http.get(
            f"{self.sim_url}/users",
            params={"limit": 100},
            headers={"Authorization": f"Token token={self.api_key}"},
        )
        users.raise_for_status()
        self.user_emails = {u["id"]: u["email"].lower() for u in users.json()["users"]}
        self.auto_approve_was = bool(self.sim("GET", "/settings").json().get("auto_approve"))
        r = self.api("GET", f"/v1/workspaces/{self.ws}/pagerduty")
        check(r.status_code == 200, f"the demo token was refused: {r.status_code} {r.text}")
        leftover = ""
        if r.json()["status"] != "not_connected":
            # A connection left by an earlier run: take it down so the walkthroughs start clean.
            self.api("DELETE", f"/v1/workspaces/{self.ws}/pagerduty").raise_for_status()
            self.wait_status({"disconnecting"})
            leftover = "; disconnected a connection left by an earlier run"
        return (
            f"API and simulator ({sim.get('scenario')}) answer; workspace {WORKSPACE_NAME} "
            f"{self.ws} has {len(seeded.members)} members and {len(seeded.rotations)} rotations; "
            f"acting as {OWNER_EMAIL} (Primary Owner){leftover}"
        )

    # --- walkthrough 1: API key -----------------------------------------------------------------

    def connect_api_key(self) -> str:
        r = self.api(
            "PUT",
            f"/v1/workspaces/{self.ws}/pagerduty/api-key",
            json={"api_key": self.api_key, "region": "us"},
        )
        check(r.status_code == 202, f"PUT api-key answered {r.status_code}: {r.text}")
        check(r.json()["connection"]["status"] == "validating", "not validating after Save")
        body = self.wait_status({"validating"})
        check(body["status"] == "connected", f"status {body['status']}: {body['status_message']}")
        check(body["account_subdomain"] == DEMO_ACCOUNT, f"account {body['account_subdomain']}")
        check(body["auth_method"] == "api_key", f"auth method {body['auth_method']}")
        return f"validating -> connected to account '{body['account_subdomain']}' with the API key"

    def schedules_mirrored(self) -> str:
        wanted = set(DEMO_BINDINGS.values())

        def probe() -> list[dict[str, Any]] | None:
            r = self.api("GET", f"/v1/workspaces/{self.ws}/pagerduty/schedules")
            r.raise_for_status()
            items = r.json()["items"]
            return items if wanted <= {s["id"] for s in items} else None

        items = wait_for("the first sync to mirror the demo schedules", probe, timeout=self.timeout)
        status = self.status()
        return (
            f"{len(items)} schedules mirrored ({', '.join(s['name'] for s in items)}); "
            f"{status['linked_summary']}"
        )

    def bind(self) -> str:
        for name, schedule_id in DEMO_BINDINGS.items():
            r = self.api(
                "PUT",
                f"/v1/workspaces/{self.ws}/rotations/{self.rotation_ids[name]}/pagerduty-schedule",
                json={"schedule_id": schedule_id},
            )
            check(r.status_code == 202, f"bind {name} answered {r.status_code}: {r.text}")
        return "bound " + ", ".join(f"{n} -> {s}" for n, s in DEMO_BINDINGS.items())

    def rotations_follow_pagerduty(self) -> str:
        expected = {name: self.oncall_emails(sid) for name, sid in DEMO_BINDINGS.items()}

        def probe() -> dict[str, dict[str, Any]] | None:
            rots = self.rotations()
            for name in DEMO_BINDINGS:
                r = rots[name]
                on_duty = {m["email"].lower() for m in r["on_duty"]}
                unmatched = {(u["email"] or "").lower() for u in r["unmatched_on_call"]}
                if r["mode"] != "pagerduty" or r["last_synced_at"] is None:
                    return None
                if on_duty | unmatched != expected[name]:
                    return None
            return rots

        rots = wait_for(
            "bound rotations to show who PagerDuty has on call", probe, timeout=self.timeout
        )
        check(rots[MANUAL_ONLY]["mode"] == "manual", f"{MANUAL_ONLY} is not Manual")
        fts = rots["Follow-the-Sun"]
        check(len(fts["on_duty"]) >= 2, "Follow-the-Sun (v3) should have two people on duty")
        parts = []
        for name in DEMO_BINDINGS:
            r = rots[name]
            duty = ", ".join(m["name"] for m in r["on_duty"]) or "nobody"
            extra = ""
            if r["unmatched_on_call"]:
                extra = (
                    " (+ not a member: "
                    + ", ".join(
                        u["email"] or u["pagerduty_user_id"] for u in r["unmatched_on_call"]
                    )
                    + ")"
                )
            parts.append(f"{name}: {len(r['members'])} members, on duty {duty}{extra}")
        return "; ".join(parts) + f"; {MANUAL_ONLY} stays Manual"

    def override_and_sync(self) -> str:
        current = self.oncall_emails("PSPRIMA")
        by_email = {e: uid for uid, e in self.user_emails.items()}
        rots = self.rotations()
        candidates = [
            m["email"].lower()
            for m in rots["Primary"]["members"]
            if m["email"].lower() not in current and m["email"].lower() in by_email
        ] or [e for e in ("carol@example.com", "bob@example.com") if e not in current]
        check(bool(candidates), "nobody to put on call")
        newcomer = candidates[0]
        self.sim(
            "POST",
            f"/accounts/{DEMO_ACCOUNT}/schedules/PSPRIMA/overrides",
            json={"user_id": by_email[newcomer], "start": "now", "duration_seconds": 3600},
        )
        check(self.oncall_emails("PSPRIMA") == {newcomer}, "the simulator did not take it")
        r = self.api("POST", f"/v1/workspaces/{self.ws}/pagerduty/sync")
        check(r.status_code == 202, f"sync now answered {r.status_code}: {r.text}")

        def probe() -> list[str] | None:
            duty = [m["email"].lower() for m in self.rotations()["Primary"]["on_duty"]]
            return duty if duty == [newcomer] else None

        wait_for(f"Primary to show {newcomer} on duty", probe, timeout=self.timeout)
        return (
            f"override in PagerDuty: {newcomer} on call for Primary On-Call (was "
            f"{', '.join(sorted(current))}); after Sync now the Primary rotation has {newcomer} "
            "on duty"
        )

    # --- walkthrough 2: OAuth 2.0 ---------------------------------------------------------------

    def connect_oauth(self) -> str:
        self.sim("POST", "/auto_approve", json={"enabled": False})
        r = self.api(
            "POST",
            f"/v1/workspaces/{self.ws}/pagerduty/oauth",
            json={
                "client_id": self.oauth_app["client_id"],
                "client_secret": self.oauth_app["client_secret"],
                "region": "us",
            },
        )
        check(r.status_code == 201, f"POST oauth answered {r.status_code}: {r.text}")
        browser = httpx.Client(timeout=15, follow_redirects=False)
        consent = browser.get(r.json()["authorization_url"])
        check(consent.status_code == 200, f"consent page answered {consent.status_code}")
        check('id="authorize"' in consent.text, "no Authorize button on the consent page")
        action = re.search(r'<form method="post" action="([^"]+)"', consent.text)
        check(action is not None, "no form on the consent page")
        fields = {
            k: unescape(v)
            for k, v in re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent.text
            )
        }
        picked = re.search(r'<option value="([^"]+)" selected>', consent.text)
        if picked:
            fields["user_id"] = picked.group(1)
        back = browser.post(unescape(action.group(1)), data={**fields, "decision": "approve"})
        check(back.status_code in (302, 303), f"Authorize answered {back.status_code}")
        callback = back.headers["location"]
        check("/v1/pagerduty/oauth/callback" in callback, f"sent back to {callback}")
        landing = browser.get(callback)
        check(landing.status_code == 303, f"callback answered {landing.status_code}")
        where = landing.headers["location"]
        outcome = parse_qs(urlsplit(where).query).get("pagerduty")
        check(outcome == ["connecting"], f"back on the panel with {outcome}")
        body = self.wait_status({"validating"})
        check(body["status"] == "connected", f"status {body['status']}: {body['status_message']}")
        check(body["pending"] is None, f"the login was not swapped in: {body['pending']}")
        check(body["auth_method"] == "oauth", f"auth method {body['auth_method']}")
        return (
            "consent page -> Authorize -> callback -> "
            f"{urlsplit(where).path}?pagerduty=connecting; connected with OAuth 2.0 to "
            f"'{body['account_subdomain']}' (checked beside the API key, which kept serving, "
            "then swapped in)"
        )

    def oauth_sync(self) -> str:
        r = self.api("POST", f"/v1/workspaces/{self.ws}/pagerduty/sync")
        check(r.status_code == 202, f"sync now answered {r.status_code}: {r.text}")
        task = r.json()["task_id"]

        def probe() -> str | None:
            t = self.api("GET", f"/v1/tasks/{task}").json()
            return t["state"] if t["state"] in ("SUCCESS", "FAILURE") else None

        state = wait_for("the OAuth sync task", probe, timeout=self.timeout)
        check(state == "SUCCESS", f"sync task ended {state}")
        rots = self.rotations()
        bound = [n for n in DEMO_BINDINGS if rots[n]["mode"] == "pagerduty"]
        check(len(bound) == len(DEMO_BINDINGS), f"only {bound} still bound")
        return f"sync with the OAuth token succeeded; {len(bound)} rotations still bound"

    # --- walkthrough 3: uninstall ---------------------------------------------------------------

    def disconnect(self) -> str:
        before = self.rotations()
        r = self.api("DELETE", f"/v1/workspaces/{self.ws}/pagerduty")
        check(r.status_code == 202, f"DELETE answered {r.status_code}: {r.text}")
        check(r.json()["connection"]["status"] == "disconnecting", "not disconnecting")
        body = self.wait_status({"disconnecting"})
        check(body["status"] == "not_connected", f"status {body['status']}")
        after = self.rotations()
        still = [n for n, r in after.items() if r["mode"] != "manual"]
        check(not still, f"still bound after disconnect: {still}")
        kept = all(
            [m["id"] for m in after[n]["members"]] == [m["id"] for m in before[n]["members"]]
            for n in DEMO_BINDINGS
        )
        check(kept, "members changed on disconnect")
        return (
            f"disconnecting -> not connected; all {len(after)} rotations are Manual "
            "(members and who is on duty kept)"
        )

    def restore(self) -> None:
        with contextlib.suppress(httpx.HTTPError, AttributeError):
            self.sim("POST", "/auto_approve", json={"enabled": self.auto_approve_was})

    # --- all of it ------------------------------------------------------------------------------

    def run(self) -> int:
        self.out(f"rrpd demo: API {self.api_url}, PagerDuty simulator {self.sim_url}")
        self.step("0", "Set up", self.prepare)
        self.out("Walkthrough 1: Login using an API Key")
        self.step("1.1", "Save the API key; connection established", self.connect_api_key)
        self.step("1.2", "First sync mirrors PagerDuty", self.schedules_mirrored)
        self.step("1.3", "Bind rotations to PagerDuty schedules", self.bind)
        self.step("1.4", "Rotations follow who is on call", self.rotations_follow_pagerduty)
        self.step("1.5", "Change who is on call; Sync now", self.override_and_sync)
        self.out("Walkthrough 2: Login using OAuth 2.0")
        self.step("2.1", "Client ID + Secret, consent page, back", self.connect_oauth)
        self.step("2.2", "Sync with the OAuth token", self.oauth_sync)
        self.out("Walkthrough 3: How to Uninstall")
        self.step("3.1", "Disconnect from PagerDuty; Confirm", self.disconnect)
        self.restore()
        if self.failed:
            self.out(f"rrpd demo: FAILED at {self.failed}")
            return 1
        self.out(f"rrpd demo: all {self.steps_ok} steps passed")
        return 0


# --- --start: a stack of our own ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def own_stack(timeout: float = 90) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """``rrpd run`` on free ports with a fresh SQLite database and Redis key prefix."""
    from workers.core.settings import reset_settings_cache

    var_dir = Path(tempfile.mkdtemp(prefix="rrpd-demo-"))
    api_port, sim_port, flower_port = _free_port(), _free_port(), _free_port()
    env_update = {
        "RRPD_ENV": "local",
        "RRPD_VAR_DIR": str(var_dir),
        "RRPD_DATABASE_URL": f"sqlite:///{var_dir / 'rrpd.sqlite3'}",
        "RRPD_REDIS_KEY_PREFIX": f"rrpd-demo-{uuid.uuid4().hex[:8]}",
        "RRPD_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
    }
    for name in ("RRPD_APP_INTEGRATIONS_URL", "RRPD_REDBEAT_URL"):
        os.environ.pop(name, None)
    os.environ.update(env_update)
    reset_settings_cache()
    log_path = var_dir / "stack.log"
    argv = [sys.executable, "-m", "rrpd", "run", "--api-port", str(api_port)]
    argv += ["--sim-port", str(sim_port), "--flower-port", str(flower_port)]
    click.echo(f"rrpd demo: starting a stack of its own (log {log_path})")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own command
            argv, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
        )
        api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        try:
            deadline = time.monotonic() + timeout
            while not _ready(api_url, sim_url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise click.ClickException(
                        f"the stack did not start; see {log_path}:\n{_tail(log_path)}"
                    )
                time.sleep(0.5)
            yield api_url, sim_url, proc
        finally:
            # Ctrl-C as a person would: rrpd run stops every part.
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            click.echo(f"rrpd demo: stack stopped (exit {proc.returncode})")


def _ready(api_url: str, sim_url: str) -> bool:
    try:
        ok = httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200
        return ok and httpx.get(f"{sim_url}/_sim/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@click.command("demo")
@click.option(
    "--api-url", default="http://127.0.0.1:8000", show_default=True, help="The running API."
)
@click.option(
    "--sim-url",
    default="http://127.0.0.1:8090",
    show_default=True,
    help="The running PagerDuty simulator (demo scenario).",
)
@click.option("--start", is_flag=True, help="Start a stack of its own (and stop it after).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait per step.")
@at_option
def demo(api_url: str, sim_url: str, start: bool, timeout: float, at: datetime | None) -> None:
    """Run the help article's three walkthroughs against the stack; exit 1 if a step fails.

    With ``--start --at INSTANT`` the stack it starts runs from that instant."""
    if at is not None and not start:
        raise click.UsageError("--at needs --start (a running stack keeps its own clock)")
    pin_clock(at)
    if start:
        with own_stack() as (own_api, own_sim, _):
            code = Demo(own_api, own_sim, timeout=timeout, out=click.echo).run()
    else:
        checked_settings()
        code = Demo(api_url, sim_url, timeout=timeout, out=click.echo).run()
    sys.exit(code)

"""Every sentence the connect feature writes for a workspace admin.

Plain words: what happened and what to do. Shown in the API's answers and the panel (errors),
in ``PagerDutyConnection.last_error`` and ``notice``; never a stack trace or a secret.
"""

from __future__ import annotations

from models import PagerDutyConnection, Region
from models.connection import STATUS_MEANINGS
from workers.core import connection_rows
from workers.pagerduty.errors import Forbidden
from workers.pagerduty.records import User

# Plain words for a status, shown when the connection has no specific last_error (written in
# the one table of what each status means).
STATUS_WORDS = {s: m.words for s, m in STATUS_MEANINGS.items() if m.words}
NOT_CONNECTED_WORDS = "PagerDuty is not connected."

# --- refused requests (ServiceError messages) ---

BAD_API_KEY = (
    "api_key must be 16 to 128 printable characters without spaces "
    "(PagerDuty API keys look like 'u+abc...' or a 20-character token)."
)
BAD_REGION = "region must be 'us' or 'eu'."
BAD_CLIENT_ID = "client_id must be 1 to 200 printable characters without spaces."
BAD_CLIENT_SECRET = "client_secret must be 1 to 500 characters without spaces."  # noqa: S105
NO_WORKSPACE = "This workspace does not exist."
# NOT_CONNECTED and not_ready (below) are written beside ``connected_connection``, which says
# them (``workers.core.connection_rows``).
NOT_CONNECTED = connection_rows.NOT_CONNECTED
DISCONNECTING = (
    "PagerDuty is being disconnected from this workspace; wait until that finishes, "
    "then connect again."
)

not_ready = connection_rows.not_ready


# --- validation outcomes (last_error) ---

KEY_REJECTED = (
    "PagerDuty rejected this API key in both regions (US and EU). Check that you copied the "
    "whole key and that it has not been deleted in PagerDuty (Integrations > API Access Keys)."
)
NO_API_ACCESS = (
    "Your PagerDuty account's plan does not include REST API access, so Round Robin cannot "
    "read schedules. Ask your PagerDuty account owner about API access."
)
DATABASE_UNAVAILABLE = (
    "Round Robin's database was unavailable for several minutes while it checked this "
    "connection, so the check could not finish. Please connect again."
)
# A validation ended by its deadline (workers.deadlines): its task was lost after it was
# published, again and again, or dropped for good. Nothing says PagerDuty was at fault.
CHECK_LOST = (
    "Round Robin could not finish checking this connection: the check was interrupted. "
    "Please try again."
)
# A check that ended on an error of ours (a bug, a SQL error): never blamed on PagerDuty.
CHECK_FAILED_HERE = (
    "Round Robin could not finish checking this connection because of an error on its side. "
    "Please try again; if it happens again, contact Round Robin support."
)
UNREACHABLE = (
    "Round Robin could not reach PagerDuty to check this connection after several tries. "
    "Please try again in a few minutes."
)
CODE_REFUSED = (
    "PagerDuty did not accept the login (the authorization took too long or was already "
    "used). Please log in with OAuth 2.0 again."
)
CLIENT_REFUSED = (
    "PagerDuty rejected the OAuth app's Client ID or Client Secret. Check both in PagerDuty "
    "(Integrations > App Registration) and log in again."
)
LOGIN_UNVERIFIED = (
    "PagerDuty's login answer could not be verified, so the connection was not saved. "
    "Please log in again."
)


def forbidden(exc: Forbidden) -> str:
    what = f" (missing: {', '.join(exc.missing)})" if exc.missing else ""
    return (
        "PagerDuty accepted the credential but it lacks permission to read users and "
        f"schedules{what}. Use a key or login that can read users and schedules."
    )


def missing_scopes(granted: frozenset[str], requested: tuple[str, ...]) -> str:
    """Which scopes PagerDuty left out, and what to change in the app registration.

    PagerDuty does not refuse a scope the app lacks: it grants only ``openid``. So the usual
    cause is an app registration whose scope list differs from what Round Robin asks for.
    """
    missing = [s for s in requested if s not in granted]
    got = ", ".join(sorted(granted)) if granted else "no scope at all"
    to_tick = ", ".join(s for s in requested if s != "openid")
    return (
        f"PagerDuty granted only {got}, so Round Robin cannot read users and schedules "
        f"(missing: {', '.join(missing)}). PagerDuty grants nothing but openid when the app's "
        "registration lacks any scope Round Robin asks for: in PagerDuty open Integrations > "
        f"App Registration, edit this Scoped OAuth app, tick {to_tick}, save, and log in again."
    )


REAUTH = (
    "PagerDuty no longer accepts this connection's login (the refresh token was revoked or has "
    "expired). Log in with OAuth 2.0 again to resume syncing; rotations keep their last state."
)


# --- notices (not errors) ---

# PagerDuty roles that see every schedule and user of the account.
FULL_VIEW_ROLES = frozenset({"owner", "admin"})


def role_notice(user: User | None) -> str | None:
    """A user-level key or OAuth login acts as its user: a non-admin may not see everything
    (the help article asks for an Admin for that reason)."""
    if user is None or user.role is None or user.role in FULL_VIEW_ROLES:
        return None
    return (
        f"This connection acts as {user.name or 'a PagerDuty user'}, whose PagerDuty role "
        f"({user.role}) may not see every schedule and user of the account; Round Robin sees "
        "only what that user can see. Connect with an account-level API key or as a PagerDuty "
        "Admin to see everything."
    )


def region_notice(chosen: Region, used: Region) -> str | None:
    if chosen == used:
        return None
    names = {Region.US: "US", Region.EU: "EU"}
    hosts = {Region.US: "api.pagerduty.com", Region.EU: "api.eu.pagerduty.com"}
    return (
        f"This API key belongs to a PagerDuty account in the {names[used]} region, not the "
        f"{names[chosen]} region that was chosen; Round Robin connected to PagerDuty "
        f"{names[used]} ({hosts[used]}) instead."
    )


# --- A pending credential (a replacement checked while the live one keeps serving) -----------

PENDING_CHECKING = (
    "Checking the new key with PagerDuty; Round Robin still uses the previous one meanwhile."
)
PENDING_REJECTED = "The new key was rejected; Round Robin still uses the previous one."
PENDING_LOST = (
    "The new key could not be checked; Round Robin still uses the previous one. "
    "Please enter it again."
)
NO_PENDING = "There is no new credential waiting for this workspace."


def pending_account_change(live: str, new: str) -> str:
    """A key of another account is never swapped in silently (bound rotations may lose their
    schedules): it waits for the admin to confirm the switch, which says what happens to each
    bound rotation, or to keep the current account."""
    return (
        f"The new key belongs to another PagerDuty account ({new}.pagerduty.com); Round Robin "
        f"still uses the previous one ({live}.pagerduty.com) until you confirm the switch. "
        f"Bound rotations whose schedule is not in {new} would become Manual."
    )


def pending_decided(decision: str, conn: PagerDutyConnection) -> str:
    """The panel's flash once the admin decided about a pending credential."""
    if decision == "confirm":
        return (
            f"Round Robin now uses PagerDuty account {conn.pagerduty_subdomain}. Rotations "
            "whose schedule is not in it are Manual (members and who is on duty kept); the "
            "others are being synced."
        )
    return "The new key was discarded. Nothing else changed."


NOT_ACCOUNT_CHANGE = "The new credential is not a change of PagerDuty account waiting for you."
ACCOUNT_CHANGE_EXPIRED = (
    "The key of another PagerDuty account waited a day without a decision and was forgotten; "
    "Round Robin still uses the previous one. Enter it again to switch accounts."
)


def pending_rejected(reason: str) -> str:
    """The outcome first, then PagerDuty's reason in the words the connect check uses."""
    return f"{PENDING_REJECTED} {reason}"


def pending_lost(reason: str) -> str:
    return f"{PENDING_LOST} {reason}"


# --- A pending OAuth login ("Log in again with OAuth" over a connected connection) -----------

PENDING_LOGIN_CHECKING = (
    "Checking the new OAuth login with PagerDuty; Round Robin still uses the previous "
    "credentials meanwhile."
)
PENDING_LOGIN_REJECTED = (
    "The new OAuth login was rejected; Round Robin still uses the previous credentials."
)
PENDING_LOGIN_LOST = (
    "The new OAuth login could not be checked; Round Robin still uses the previous "
    "credentials. Please log in again."
)
NO_STORED_OAUTH_APP = (
    "No OAuth app is stored for this workspace's connection: enter the Client ID and Client "
    "Secret of your Scoped OAuth app."
)


def pending_login_rejected(reason: str) -> str:
    return f"{PENDING_LOGIN_REJECTED} {reason}"


def pending_login_lost(reason: str) -> str:
    return f"{PENDING_LOGIN_LOST} {reason}"


def pending_login_account_change(live: str, new: str) -> str:
    """As for a key: a login of another account is never swapped in silently."""
    return (
        f"The new OAuth login belongs to another PagerDuty account ({new}.pagerduty.com); "
        f"Round Robin still uses the previous one ({live}.pagerduty.com). To switch accounts, "
        "disconnect and connect with the new login."
    )

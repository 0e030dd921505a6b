"""What every ``rrpd`` command shares: configuration checks, errors, ids and plain output."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import IO, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Member, Workspace, normalize_email
from workers.core.settings import ConfigurationError, Settings, get_settings
from workers.core.startup import check_configuration

CONFIG_EXIT_CODE = 2


def echo_configuration_error(exc: ConfigurationError, file: IO[Any] | None = None) -> None:
    """One line per problem, each naming the variable to fix; never a traceback."""
    for line in str(exc).splitlines() or ["invalid configuration"]:
        click.echo(f"configuration error: {line}", file=file, err=file is None)


class ConfigurationProblem(click.ClickException):
    """A configuration error shown the same way by every command (exit status 2)."""

    exit_code = CONFIG_EXIT_CODE

    def __init__(self, exc: ConfigurationError) -> None:
        super().__init__(str(exc))
        self.error = exc

    def show(self, file: IO[Any] | None = None) -> None:
        echo_configuration_error(self.error, file)


def checked_settings() -> Settings:
    """The settings, checked as a server process checks them (exit 2 with words if not)."""
    try:
        settings = get_settings()
        check_configuration(settings)
    except ConfigurationError as exc:
        raise ConfigurationProblem(exc) from None
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return settings


def local_only(command: str) -> None:
    """Refuse a command that grants access, in production.

    Production members and their tokens come from the Round Robin app; an operator shell that
    could add a Primary Owner or mint a token would hold every workspace's keys. There is no
    override flag on purpose (see docs/api.md, "Local administration").
    """
    if checked_settings().is_production:
        raise click.ClickException(
            f"`rrpd {command}` is disabled in production (RRPD_ENV=production): members and "
            "their tokens come from the Round Robin app, not from an operator shell."
        )


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.ClickException(f"{what} {value!r} is not a valid id") from None


def find_workspace(session: Session, workspace_id: str) -> Workspace:
    ws = session.get(Workspace, parse_id(workspace_id, "workspace"))
    if ws is None:
        raise click.ClickException(f"unknown workspace {workspace_id}")
    return ws


def member_by_email(session: Session, ws: Workspace, email: str) -> Member:
    member = session.execute(
        select(Member).where(
            Member.workspace_id == ws.id, Member.email_key == normalize_email(email)
        )
    ).scalar_one_or_none()
    if member is None:
        raise click.ClickException(f"no member with email {email!r} in workspace {ws.id}")
    return member


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def plain(value: Any) -> Any:
    """``value`` with datetimes and UUIDs as strings (for ``--json``)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value

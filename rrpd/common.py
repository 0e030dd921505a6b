"""What every ``rrpd`` command shares: configuration checks, errors, ids and plain output."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any, TypeVar

import click
from pydantic import BaseModel
from sqlalchemy import func, select
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


WORKSPACE_HELP = (
    "WORKSPACE is a workspace's id or its name (exact, else ignoring case); a name several "
    "workspaces share is refused with their ids."
)
# Ids an "ambiguous name" error lists before "and N more".
_SHOWN_IDS = 10

F = TypeVar("F", bound=Callable[..., Any])


def workspace_argument(command: F) -> F:
    """The WORKSPACE argument (for ``find_workspace``), said the same way in every command's
    help. Goes below ``@click.command``, which reads the docstring this extends."""
    command.__doc__ = f"{inspect.cleandoc(command.__doc__ or '')}\n\n{WORKSPACE_HELP}"
    return click.argument("workspace", metavar="WORKSPACE")(command)


def find_workspace(session: Session, workspace: str) -> Workspace:
    """The workspace ``workspace`` names: its id, or its name.

    Names are not unique (the Round Robin app does not make them so): an exact match wins, then
    a match ignoring case; a name that fits several workspaces, or none, is refused in words
    that say what to type instead.
    """
    text = workspace.strip()
    try:
        ws_id = uuid.UUID(text)
    except ValueError:
        pass
    else:
        ws = session.get(Workspace, ws_id)
        if ws is None:
            raise click.ClickException(f"unknown workspace {text}")
        return ws
    for match in (Workspace.name == text, func.lower(Workspace.name) == func.lower(text)):
        ids = list(
            session.scalars(
                select(Workspace.id).where(match).order_by(Workspace.created_at, Workspace.id)
            )
        )
        if len(ids) == 1:
            return session.get_one(Workspace, ids[0])
        if ids:
            shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS])
            more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
            raise click.ClickException(
                f"workspace name {text!r} is ambiguous: {len(ids)} workspaces have it "
                f"({shown}{more}); give the id instead"
            )
    raise click.ClickException(
        f"unknown workspace {text!r}: no workspace has this id or name "
        "(`rrpd workspace list` shows them)"
    )


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
    """``value`` with datetimes and UUIDs as strings, read models as dicts of the fields they
    were given (for ``--json``)."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump(exclude_unset=True))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value

"""Local administration: workspaces, members, rotations and API tokens (``rrpd workspace ...``).

For local runs and demos: production workspaces and members come from the Round Robin app.
"""

from __future__ import annotations

import click

from rrpd.common import (
    checked_settings,
    find_workspace,
    local_only,
    member_by_email,
    workspace_argument,
)

ROLES = ("primary_owner", "admin", "member")


@click.group("workspace")
def workspace_group() -> None:
    """Workspaces (create: local use; list: anywhere)."""


@workspace_group.command("create")
@click.argument("name")
def workspace_create(name: str) -> None:
    """Create a workspace and print its id."""
    from models import Workspace
    from workers.core.db import transaction

    checked_settings()
    name = name.strip()
    if not name or len(name) > 200:
        raise click.ClickException("the workspace name must be 1 to 200 characters")
    with transaction() as session:
        ws = Workspace(name=name)
        session.add(ws)
        session.flush()
        ws_id = ws.id
    click.echo(str(ws_id))


@workspace_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def workspace_list(as_json: bool) -> None:
    """List workspaces: id, name, members, rotations and the PagerDuty connection's status."""
    import json

    from sqlalchemy import ScalarSelect, func, select

    from models import ConnectionStatus, Member, PagerDutyConnection, Rotation, Workspace
    from workers.core.db import transaction

    checked_settings()

    def count(model: type[Member] | type[Rotation]) -> ScalarSelect[int]:
        return select(func.count()).where(model.workspace_id == Workspace.id).scalar_subquery()

    live = (
        select(PagerDutyConnection.status)
        .where(
            PagerDutyConnection.workspace_id == Workspace.id,
            PagerDutyConnection.status != ConnectionStatus.DISCONNECTED,
        )
        .limit(1)
        .scalar_subquery()
    )
    with transaction() as session:
        rows = session.execute(
            select(Workspace.id, Workspace.name, count(Member), count(Rotation), live).order_by(
                func.lower(Workspace.name), Workspace.id
            )
        ).all()
    items = [
        {
            "workspace_id": str(ws_id),
            "name": name,
            "members": members,
            "rotations": rotations,
            "pagerduty": status or "not connected",
        }
        for ws_id, name, members, rotations, status in rows
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no workspace yet (rrpd workspace create NAME)")
        return
    header = ("WORKSPACE", "NAME", "MEMBERS", "ROTATIONS", "PAGERDUTY")
    table = [
        (i["workspace_id"], i["name"], str(i["members"]), str(i["rotations"]), i["pagerduty"])
        for i in items
    ]
    widths = [max(len(r[c]) for r in [header, *table]) for c in range(len(header))]
    for row in [header, *table]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    click.echo(f"{len(items)} workspace(s)")


@click.group("member")
def member_group() -> None:
    """Workspace members (local use)."""


@member_group.command("add")
@workspace_argument
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The member's role.")
@click.option("--name", default=None, help="Display name (default: the email's local part).")
def member_add(workspace: str, email: str, role: str, name: str | None) -> None:
    """Add a member to a workspace and print its id (local runs only)."""
    from sqlalchemy.exc import IntegrityError

    from models import Member
    from workers.core.db import transaction

    local_only("member add")
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise click.ClickException(f"{email!r} is not an email address")
    try:
        with transaction() as session:
            ws = find_workspace(session, workspace)
            m = Member(
                workspace_id=ws.id,
                email=email,
                display_name=(name or email.split("@", 1)[0]).strip()[:200],
                role=role,
            )
            session.add(m)
            session.flush()
            member_id = m.id
    except IntegrityError:
        raise click.ClickException(
            f"workspace {workspace} already has a member with email {email!r}"
        ) from None
    click.echo(str(member_id))


@click.group("rotation")
def rotation_group() -> None:
    """Rotations (local use)."""


@rotation_group.command("create")
@workspace_argument
@click.argument("name")
@click.option("--member", "emails", multiple=True, help="A member's email, in rotation order.")
def rotation_create(workspace: str, name: str, emails: tuple[str, ...]) -> None:
    """Create a manual rotation with these members (in order) and print its id."""
    from sqlalchemy.exc import IntegrityError

    from models import Rotation, RotationMember
    from workers.core.db import transaction

    checked_settings()
    try:
        with transaction() as session:
            ws = find_workspace(session, workspace)
            members = []
            for email in emails:
                m = member_by_email(session, ws, email)
                if m not in members:
                    members.append(m)
            rotation = Rotation(workspace_id=ws.id, name=name.strip())
            session.add(rotation)
            session.flush()
            for position, m in enumerate(members):
                session.add(
                    RotationMember(rotation_id=rotation.id, member_id=m.id, position=position)
                )
            session.flush()
            rotation_id = rotation.id
    except IntegrityError:
        raise click.ClickException(
            f"workspace {workspace} already has a rotation named {name!r}"
        ) from None
    click.echo(str(rotation_id))


@click.command("token")
@workspace_argument
@click.argument("email")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    default=None,
    help="Lifetime in seconds (default: RRPD_API_JWT_TTL_SECONDS).",
)
def token(workspace: str, email: str, ttl: int | None) -> None:
    """Print an API token (JWT) for a member, as the Round Robin app would issue (local runs
    only: refused in production)."""
    from api_stub.auth import issue_token
    from workers.core.db import transaction

    local_only("token")
    with transaction() as session:
        ws = find_workspace(session, workspace)
        m = member_by_email(session, ws, email)
        member_id, role = m.id, m.role
    click.echo(issue_token(ws.id, member_id, role, ttl_seconds=ttl))


COMMANDS: tuple[click.Command, ...] = (workspace_group, member_group, rotation_group, token)

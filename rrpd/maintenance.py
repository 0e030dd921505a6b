"""Maintenance commands: the database schema (``rrpd db``) and encryption keys (``rrpd keys``)."""

from __future__ import annotations

import click

from rrpd.common import checked_settings


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to the configured database."""
    from workers.core.migrate import upgrade

    settings = checked_settings()
    upgrade(settings.effective_database_url, revision)
    click.echo(f"database at revision {revision}: {_safe_url(settings.effective_database_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- keys ------------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Encryption keys for stored secrets."""


@keys.command("generate")
@click.option("--id", "key_id", default="k1", show_default=True, help="Key id to prefix.")
def keys_generate(key_id: str) -> None:
    """Print a new key as KEY_ID=KEY, ready to put first in RRPD_ENCRYPTION_KEYS."""
    from workers.core.crypto import generate_key

    click.echo(f"{key_id}={generate_key()}")


@keys.command("rotate")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret with the first (primary) key. Safe while workers run.

    First checks that every stored secret decrypts with RRPD_ENCRYPTION_KEYS (nothing is
    written otherwise), and checks again afterwards.
    """
    checked_settings()
    from workers.core.crypto import get_keyring
    from workers.core.keyrotation import RotationRefused, rotate_all

    keyring = get_keyring()
    ids = ", ".join(key_id for key_id, _ in keyring.keys)
    click.echo(f"checking that every stored secret decrypts with the configured keys ({ids})")

    def progress(column: str, scanned: int, rotated: int) -> None:
        click.echo(f"  {column}: {scanned} scanned, {rotated} re-encrypted so far")

    try:
        report = rotate_all(batch_size=batch_size, keyring=keyring, progress=progress)
    except RotationRefused as refused:
        for line in refused.report.problem_lines():
            click.echo(f"  {line}", err=True)
        raise click.ClickException(
            f"refused: {refused.report.failed} of {refused.report.scanned} stored secrets do not "
            "decrypt with RRPD_ENCRYPTION_KEYS; nothing was re-encrypted"
        ) from None
    assert report.before is not None and report.after is not None
    click.echo(f"  ok: {report.before.scanned} secrets decrypt ({_by_key(report.before.by_key)})")
    click.echo(f"re-encrypted with primary key {keyring.primary_id!r}")
    click.echo(
        f"done: {report.scanned} secrets scanned, {report.rotated} re-encrypted, "
        f"{report.skipped_concurrent} changed concurrently (already current)"
    )
    after = report.after
    if not after.ok:
        for line in after.problem_lines():
            click.echo(f"  {line}", err=True)
        raise click.ClickException(
            f"after re-encrypting, {after.failed} of {after.scanned} stored secrets do not "
            "decrypt with RRPD_ENCRYPTION_KEYS (written meanwhile by a process with other keys?)"
        )
    old = after.scanned - after.by_key[keyring.primary_id]
    click.echo(
        f"verified: all {after.scanned} stored secrets decrypt ({_by_key(after.by_key)})"
        + (f"; {old} still on older keys, run again" if old else "")
    )


def _by_key(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none stored"

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from models import PagerDutyConnection
from tests.support import factories
from tests.support.secrets import stored_ciphertext
from workers.core import crypto
from workers.core.crypto import Keyring
from workers.core.keyrotation import encrypted_columns, rotate_all
from workers.core.settings import reset_settings_cache


def _all_secret_values(session: Session) -> list[str]:
    values: list[str] = []
    for table, column in encrypted_columns():
        values += [
            v
            for (v,) in session.execute(text(f"SELECT {column.name} FROM {table.name}"))
            if v is not None
        ]
    return values


def test_every_encrypted_model_column_is_found_from_the_metadata() -> None:
    found = {f"{table.name}.{column.name}" for table, column in encrypted_columns()}
    assert found == {
        "pagerduty_connections.api_key_encrypted",
        "pagerduty_connections.pending_api_key_encrypted",
        "pagerduty_connections.oauth_client_secret_encrypted",
        "pagerduty_connections.access_token_encrypted",
        "pagerduty_connections.refresh_token_encrypted",
        "oauth_authorizations.code_verifier_encrypted",
        "oauth_authorizations.client_secret_encrypted",
        "oauth_authorizations.code_encrypted",
        "oauth_authorizations.issued_tokens_encrypted",
    }


def test_no_stored_column_holds_the_plaintext(session: Session) -> None:
    ws = factories.workspace(session)
    factories.api_key_connection(session, ws, api_key="u+PLAINTEXT-canary-123")
    session.commit()
    dump = "\n".join(
        str(row)
        for table in ("pagerduty_connections",)
        for row in session.execute(text(f"SELECT * FROM {table}"))
    )
    assert "PLAINTEXT-canary-123" not in dump
    assert all(v.startswith("v1:") for v in _all_secret_values(session))


def test_rotate_reencrypts_with_primary_key_and_keeps_values(session: Session, monkeypatch) -> None:
    ws = factories.workspace(session)
    conns = []
    for i in range(7):
        w = factories.workspace(session) if i else ws
        conns.append(factories.api_key_connection(session, w, api_key=f"u+key-{i}"))
    session.commit()
    old_material = os.environ["RRPD_ENCRYPTION_KEYS"]
    new_key = f"fresh={Fernet.generate_key().decode()}"
    monkeypatch.setenv("RRPD_ENCRYPTION_KEYS", f"{new_key},{old_material}")
    reset_settings_cache()
    try:
        progress: list[tuple[str, int, int]] = []
        report = rotate_all(batch_size=3, progress=lambda *a: progress.append(a))
        assert report.rotated == 7
        assert any(p[0] == "pagerduty_connections.api_key_encrypted" for p in progress)
        session.expire_all()
        for i, conn in enumerate(conns):
            stored = stored_ciphertext(session, conn, "api_key")
            assert stored.startswith("v1:fresh:")
            assert crypto.decrypt(stored) == f"u+key-{i}"
        # A second run has nothing left to do.
        assert rotate_all().rotated == 0
        # And the old key is no longer needed.
        monkeypatch.setenv("RRPD_ENCRYPTION_KEYS", new_key)
        reset_settings_cache()
        assert session.get(PagerDutyConnection, conns[0].id).api_key == "u+key-0"
    finally:
        monkeypatch.setenv("RRPD_ENCRYPTION_KEYS", old_material)
        reset_settings_cache()


def test_rotation_never_overwrites_a_concurrent_update(session: Session, monkeypatch) -> None:
    """A worker that refreshes a token while rotation runs keeps its newer value."""
    ws = factories.workspace(session)
    conn = factories.api_key_connection(session, ws, api_key="u+old")
    session.commit()
    old_material = os.environ["RRPD_ENCRYPTION_KEYS"]
    monkeypatch.setenv(
        "RRPD_ENCRYPTION_KEYS", f"fresh={Fernet.generate_key().decode()},{old_material}"
    )
    reset_settings_cache()
    try:
        ring = crypto.get_keyring()

        class RacingKeyring(Keyring):
            def rotate(self, ciphertext: str) -> str:
                rotate_while_a_worker_writes()
                return super().rotate(ciphertext)

        def rotate_while_a_worker_writes() -> None:
            # Another process commits a new secret between rotation's read and its write.
            engine = create_engine(session.get_bind().url)
            with engine.begin() as other:
                other.execute(
                    text("UPDATE pagerduty_connections SET api_key_encrypted = :v WHERE id = :id"),
                    {"v": ring.encrypt("u+new"), "id": conn.id},
                )
            engine.dispose()

        report = rotate_all(keyring=RacingKeyring(ring.keys))
        assert (report.rotated, report.skipped_concurrent) == (0, 1)
        session.expire_all()
        assert session.get(PagerDutyConnection, conn.id).api_key == "u+new"
    finally:
        monkeypatch.setenv("RRPD_ENCRYPTION_KEYS", old_material)
        reset_settings_cache()


# --- refusing to rotate secrets nobody can read -------------------------------------------------


def _stored(session: Session, ring: Keyring, n: int = 2) -> list[PagerDutyConnection]:
    conns = []
    for i in range(n):
        conn = factories.api_key_connection(session, factories.workspace(session), api_key="x")
        # Written as ciphertext of ``ring`` (maybe a key the configuration lacks), past the type.
        session.execute(
            text("UPDATE pagerduty_connections SET api_key_encrypted = :v WHERE id = :id"),
            {"v": ring.encrypt(f"u+key-{i}"), "id": conn.id},
        )
        conns.append(conn)
    session.commit()
    session.expunge_all()  # the model's plaintext is stale; nobody loads these rows again
    return conns


def _configure(monkeypatch, material: str) -> None:
    monkeypatch.setenv("RRPD_ENCRYPTION_KEYS", material)
    reset_settings_cache()


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from rrpd.cli import cli

    return CliRunner().invoke(cli, ["keys", "rotate", *args])


def test_a_key_id_missing_from_the_configuration_refuses_and_changes_nothing(
    session: Session, monkeypatch
) -> None:
    from workers.core.keyrotation import RotationRefused

    old = Keyring.parse(f"old={Fernet.generate_key().decode()}")
    conns = _stored(session, old)
    before = [stored_ciphertext(session, c, "api_key") for c in conns]
    _configure(monkeypatch, f"new={Fernet.generate_key().decode()}")
    try:
        with pytest.raises(RotationRefused) as refused:
            rotate_all()
        (line,) = refused.value.report.problem_lines()
        assert line.startswith(
            "2 secret(s) in pagerduty_connections.api_key_encrypted are encrypted with key "
            "'old', which is not in RRPD_ENCRYPTION_KEYS"
        )
        result = _cli()
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert "refused: 2 of 2 stored secrets do not decrypt" in result.output
        assert "nothing was re-encrypted" in result.output
        assert "key 'old', which is not in RRPD_ENCRYPTION_KEYS" in result.output
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    session.expire_all()
    assert [stored_ciphertext(session, c, "api_key") for c in conns] == before


def test_wrong_material_for_a_known_id_is_reported_not_success(
    session: Session, monkeypatch
) -> None:
    real = Keyring.parse(f"k1={Fernet.generate_key().decode()}")
    _stored(session, real)
    # The same id, other material: every secret already "uses the primary key", so the old
    # command reported 0 re-encrypted and success while nothing could be read.
    _configure(monkeypatch, f"k1={Fernet.generate_key().decode()}")
    try:
        result = _cli()
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert "refused: 2 of 2 stored secrets do not decrypt" in result.output
        assert "do not decrypt with the configured 'k1'" in result.output
        assert "done:" not in result.output
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_a_successful_rotation_is_verified_after(session: Session, monkeypatch) -> None:
    old_material = os.environ["RRPD_ENCRYPTION_KEYS"]
    _stored(session, crypto.get_keyring(), n=3)
    _configure(monkeypatch, f"fresh={Fernet.generate_key().decode()},{old_material}")
    try:
        result = _cli()
        assert result.exit_code == 0, result.output
        assert "  ok: 3 secrets decrypt (test1: 3)" in result.output
        assert "done: 3 secrets scanned, 3 re-encrypted" in result.output
        assert result.output.rstrip().endswith("verified: all 3 stored secrets decrypt (fresh: 3)")
    finally:
        monkeypatch.undo()
        reset_settings_cache()

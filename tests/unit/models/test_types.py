"""``EncryptedText`` gets its cipher at start-up: the models do not import ``workers.core``."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import sqlite

from models import types
from models.types import CipherNotInstalled, EncryptedText
from workers.core.db import make_engine

DIALECT = sqlite.dialect()


@pytest.fixture
def no_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has not started up yet (monkeypatch restores the installed cipher)."""
    monkeypatch.setattr(types, "_encrypt", None)
    monkeypatch.setattr(types, "_decrypt", None)


@pytest.mark.usefixtures("no_cipher")
def test_a_secret_column_used_before_start_up_says_so() -> None:
    column = EncryptedText()
    with pytest.raises(CipherNotInstalled, match=r"workers\.core\.crypto\.install\(\)"):
        column.process_bind_param("u+secret-api-key", DIALECT)
    with pytest.raises(CipherNotInstalled, match="no cipher"):
        column.process_result_value("v1:k1:token", DIALECT)
    assert column.process_bind_param(None, DIALECT) is None  # no secret, nothing to encrypt


@pytest.mark.usefixtures("no_cipher")
def test_building_an_engine_installs_the_cipher() -> None:
    make_engine("sqlite://").dispose()
    column = EncryptedText()
    stored = column.process_bind_param("u+secret-api-key", DIALECT)
    assert stored is not None
    assert stored.startswith("v1:")
    assert "u+secret-api-key" not in stored
    assert column.process_result_value(stored, DIALECT) == "u+secret-api-key"

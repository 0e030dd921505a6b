"""Column types shared by the models."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import Enum, Text, TypeDecorator
from sqlalchemy.engine import Dialect


def string_enum(enum_cls: type[StrEnum], length: int) -> Enum:
    """A ``StrEnum`` stored as its values in a ``VARCHAR(length)`` (no native enum type).

    The attribute holds the enum member; the database holds the same strings as before, within
    the same length, and the check constraint each model declares stays the one that guards it
    (``create_constraint=False``). Unknown strings are refused on the way in.
    """
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        validate_strings=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class CipherNotInstalled(RuntimeError):
    """An ``EncryptedText`` value was written or read before start-up installed the cipher."""


# The cipher ``EncryptedText`` uses, installed at start-up (``use_cipher``): the models sit
# below ``workers.core`` and do not import it (docs/design.md, "Dependencies point one way").
_encrypt: Callable[[str], str] | None = None
_decrypt: Callable[[str], str] | None = None


def use_cipher(encrypt: Callable[[str], str], decrypt: Callable[[str], str]) -> None:
    """Install what encrypts and decrypts secret columns (``workers.core.crypto.install``,
    called whenever ``workers.core.db`` builds an engine)."""
    global _encrypt, _decrypt
    _encrypt, _decrypt = encrypt, decrypt


def _cipher() -> tuple[Callable[[str], str], Callable[[str], str]]:
    if _encrypt is None or _decrypt is None:
        raise CipherNotInstalled(
            "EncryptedText has no cipher: call workers.core.crypto.install() at start-up "
            "(workers.core.db does when it builds an engine)"
        )
    return _encrypt, _decrypt


class EncryptedText(TypeDecorator[str]):
    """A secret: plaintext on the model attribute, ciphertext in the database.

    Values are encrypted on the way in and decrypted on the way out with the installed cipher,
    ``workers.core.crypto`` (``v1:<key id>:<fernet token>``; the first configured key encrypts,
    every configured key decrypts). Encryption is randomised, so an encrypted column cannot be
    compared with a value in SQL; key rotation (``workers.core.keyrotation``) finds every
    column of this type in the models' metadata and works on the raw ciphertext
    (``type_coerce(column, Text)``).

    The cipher reads the settings on first use, not at start-up: importing the models
    (Alembic, the CLI's ``--help``) must not read them.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _cipher()[0](value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _cipher()[1](str(value))

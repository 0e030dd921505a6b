"""Column types shared by the models."""

from __future__ import annotations

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


class EncryptedText(TypeDecorator[str]):
    """A secret: plaintext on the model attribute, ciphertext in the database.

    Values are encrypted on the way in and decrypted on the way out with
    ``workers.core.crypto`` (``v1:<key id>:<fernet token>``; the first configured key encrypts,
    every configured key decrypts). Encryption is randomised, so an encrypted column cannot be
    compared with a value in SQL; key rotation (``workers.core.keyrotation``) finds every
    column of this type in the models' metadata and works on the raw ciphertext
    (``type_coerce(column, Text)``).

    ``workers.core.crypto`` is imported on first use, not here: importing the models (Alembic,
    the CLI's ``--help``) must not read the settings.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        from workers.core import crypto

        return crypto.encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        from workers.core import crypto

        return crypto.decrypt(str(value))

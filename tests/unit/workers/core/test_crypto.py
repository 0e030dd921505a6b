from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from workers.core.crypto import DecryptionError, Keyring
from workers.core.settings import ConfigurationError


def _key() -> str:
    return Fernet.generate_key().decode()


def test_ciphertext_is_self_describing_and_round_trips() -> None:
    ring = Keyring.parse(f"primary={_key()}")
    token = ring.encrypt("u+secret-api-key")
    version, key_id, _body = token.split(":", 2)
    assert (version, key_id) == ("v1", "primary")
    assert "u+secret-api-key" not in token
    assert ring.decrypt(token) == "u+secret-api-key"


def test_first_key_encrypts_all_keys_decrypt() -> None:
    old, new = _key(), _key()
    old_ring = Keyring.parse(f"old={old}")
    legacy = old_ring.encrypt("refresh-token")
    ring = Keyring.parse(f"new={new},old={old}")
    assert ring.decrypt(legacy) == "refresh-token"
    assert ring.key_id_of(ring.encrypt("x")) == "new"
    assert ring.needs_rotation(legacy)
    rotated = ring.rotate(legacy)
    assert ring.key_id_of(rotated) == "new"
    assert Keyring.parse(f"new={new}").decrypt(rotated) == "refresh-token"


def test_bare_key_gets_an_id() -> None:
    ring = Keyring.parse(_key())
    assert ring.primary_id == "k1"


def test_missing_key_is_a_clear_error_not_plaintext() -> None:
    token = Keyring.parse(f"gone={_key()}").encrypt("secret")
    with pytest.raises(DecryptionError, match="key 'gone', which is not configured"):
        Keyring.parse(f"other={_key()}").decrypt(token)


def test_wrong_key_with_same_id_is_a_clear_error() -> None:
    token = Keyring.parse(f"k={_key()}").encrypt("secret")
    with pytest.raises(DecryptionError, match="does not decrypt"):
        Keyring.parse(f"k={_key()}").decrypt(token)


def test_plaintext_in_a_secret_column_is_refused() -> None:
    with pytest.raises(DecryptionError):
        Keyring.parse(f"k={_key()}").decrypt("u+this-was-never-encrypted")


@pytest.mark.parametrize(
    "material",
    ["", " , ", "k1=not-a-fernet-key", "dup"],
    ids=["empty", "blank-items", "not-fernet", "duplicate-ids"],
)
def test_bad_key_configuration_is_rejected(material: str) -> None:
    if material == "dup":
        material = f"a={_key()},a={_key()}"
    with pytest.raises(ConfigurationError):
        Keyring.parse(material)


@pytest.mark.parametrize(
    ("material", "words"),
    [
        ("k1=notafernetkey", "RRPD_ENCRYPTION_KEYS: key 'k1' is not a valid Fernet key"),
        (" , ", "RRPD_ENCRYPTION_KEYS lists no key"),
        ("dup", "RRPD_ENCRYPTION_KEYS: key id 'a' appears more than once"),
        ("a b=x", "RRPD_ENCRYPTION_KEYS: entry 1 has a key id that is not letters"),
    ],
    ids=["not-fernet", "empty-list", "duplicate-id", "bad-id"],
)
def test_bad_key_configuration_names_the_variable_not_the_key(material: str, words: str) -> None:
    if material == "dup":
        material = f"a={_key()},a={_key()}"
    with pytest.raises(ConfigurationError) as refused:
        Keyring.parse(material)
    message = str(refused.value)
    assert message.startswith(words), message
    assert "\n" not in message
    for item in material.split(","):
        secret = item.partition("=")[2]
        if len(secret) > 8:
            assert secret not in message

"""Encryption of stored secrets with ``cryptography``'s Fernet, keyed so keys can rotate.

Ciphertext is self-describing: ``v1:<key id>:<fernet token>``. The first configured key
encrypts; every configured key decrypts. There is no plaintext fallback, ever.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from models import types
from workers.core.process import after_fork
from workers.core.settings import ConfigurationError, get_settings

PREFIX = "v1"


class DecryptionError(Exception):
    """A stored secret could not be decrypted (unknown key id, wrong key or damaged data).

    ``reason`` is ``malformed``, ``unknown_key`` or ``wrong_key``; ``key_id`` the key the
    ciphertext names, when it names one.
    """

    def __init__(self, message: str, *, reason: str = "malformed", key_id: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, Fernet], ...]

    @classmethod
    def parse(cls, material: str, source: str = "RRPD_ENCRYPTION_KEYS") -> Keyring:
        """Parse ``id=key,id2=key2`` (a bare key gets the id ``k<n>``).

        Every key is checked here, so a bad list fails at start-up rather than on the first
        connect. Messages name ``source`` (the variable or file) and never a key's material.
        """
        keys: list[tuple[str, Fernet]] = []
        for n, item in enumerate(p.strip() for p in material.split(",")):
            if not item:
                continue
            key_id, sep, key = item.partition("=")
            if not sep or len(key_id) > 32:
                # A Fernet key is base64 and may itself end with "="; treat it as bare.
                key_id, key = f"k{n + 1}", item
            if not key_id.replace("-", "").replace("_", "").isalnum():
                # Not echoed: a mangled entry may hold a piece of a real key.
                raise ConfigurationError(
                    f"{source}: entry {n + 1} has a key id that is not letters, digits, '-' or "
                    "'_' (write id=key, e.g. k1=<key>)"
                )
            try:
                keys.append((key_id, Fernet(key.encode())))
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"{source}: key {key_id!r} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes; `rrpd keys generate` makes one)"
                ) from None
        if not keys:
            raise ConfigurationError(
                f"{source} lists no key; set it to id=key[,id=key...] "
                "(`rrpd keys generate` makes one)"
            )
        ids = [k for k, _ in keys]
        duplicates = sorted({k for k in ids if ids.count(k) > 1})
        if duplicates:
            raise ConfigurationError(
                f"{source}: key id {duplicates[0]!r} appears more than once; encryption key ids "
                "must be unique (a ciphertext names the one key that decrypts it)"
            )
        return cls(tuple(keys))

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: str) -> str:
        key_id, fernet = self.keys[0]
        return f"{PREFIX}:{key_id}:{fernet.encrypt(plaintext.encode()).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        version, key_id, token = _split(ciphertext)
        if version != PREFIX:
            raise DecryptionError(f"unknown ciphertext version {version!r}")
        for candidate_id, fernet in self.keys:
            if candidate_id == key_id:
                try:
                    return fernet.decrypt(token.encode()).decode()
                except InvalidToken:
                    raise DecryptionError(
                        f"secret encrypted with key {key_id!r} does not decrypt with the "
                        "configured key of that id",
                        reason="wrong_key",
                        key_id=key_id,
                    ) from None
        raise DecryptionError(
            f"secret was encrypted with key {key_id!r}, which is not configured; "
            "add it to RRPD_ENCRYPTION_KEYS",
            reason="unknown_key",
            key_id=key_id,
        )

    def key_id_of(self, ciphertext: str) -> str:
        return _split(ciphertext)[1]

    def needs_rotation(self, ciphertext: str) -> bool:
        return self.key_id_of(ciphertext) != self.primary_id

    def rotate(self, ciphertext: str) -> str:
        return self.encrypt(self.decrypt(ciphertext))


def _split(ciphertext: str) -> tuple[str, str, str]:
    parts = ciphertext.split(":", 2)
    if len(parts) != 3:
        raise DecryptionError("stored value is not ciphertext of the form v1:<key id>:<token>")
    return parts[0], parts[1], parts[2]


_cache_lock = threading.Lock()
_cache: tuple[str, Keyring] | None = None


def get_keyring() -> Keyring:
    global _cache
    settings = get_settings()
    material = settings.encryption_key_material()
    with _cache_lock:
        if _cache is None or _cache[0] != material:
            _cache = (material, Keyring.parse(material, settings.encryption_keys_source))
        return _cache[1]


@after_fork
def _fresh_lock_after_fork() -> None:
    # The keyring may stay (no sockets), but a lock held by another thread at the fork would not.
    global _cache_lock
    _cache_lock = threading.Lock()


def encrypt(plaintext: str) -> str:
    return get_keyring().encrypt(plaintext)


def decrypt(ciphertext: str) -> str:
    return get_keyring().decrypt(ciphertext)


def install() -> None:
    """Give the models' ``EncryptedText`` columns this module's cipher (the models cannot import
    it: they sit below ``workers.core``). Idempotent; the keys are still read on first use."""
    types.use_cipher(encrypt, decrypt)


def generate_key() -> str:
    return Fernet.generate_key().decode()

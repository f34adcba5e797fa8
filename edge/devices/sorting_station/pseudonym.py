"""Household ids leave the edge only as a keyed hash: HMAC-SHA256(site key, raw id), truncated.

Why keyed: card numbers and QR ids are short and structured (`LZ-CZ-000123`: a city, a
district and a six-digit number), so an unkeyed SHA-256 of one is reversed by hashing all
million candidates in a second. With HMAC the hash can only be computed, and so reversed, by
whoever holds the key, which stays on the edge boxes (a file or env var, never in the repo).
Use one key per operator/city, not per device, so that a household has the same pseudonym at
every station (participation counts distinct households). Rotating the key re-pseudonymises
everyone: do it only at a reporting-period boundary.

16 hex chars (64 bits) keeps collisions negligible for a city's households (about 1e-8 at a
million households) while staying short; the contract (contract.text.PSEUDONYM) accepts exactly
this shape and nothing else, so a raw id can never pass for one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from contract.text import PSEUDONYM_CHARS

MIN_KEY_BYTES = 16
ANONYMOUS = "anonymous"
"""Pseudonym of a drop made without a card: a fixed word, never a hex digest, so it is obvious."""


class PseudonymKeyError(ValueError):
    """The household key is missing, unreadable or too short; the message says which."""


def generate_key() -> str:
    """A fresh random key as 64 hex chars, e.g. for `wastestream` setup or tests."""
    return secrets.token_hex(32)


def load_key(key_file: str | None = None, key_env: str | None = None) -> bytes:
    """Read the key from a file (first line) or from an env var; the text's UTF-8 bytes are the key."""
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PseudonymKeyError(f"household key file {key_file}: {exc.strerror or exc}") from None
        where = f"file {key_file}"
    elif key_env:
        text = os.environ.get(key_env, "").strip()
        where = f"env var {key_env}"
    else:
        raise PseudonymKeyError("no household key configured (household_key_file or household_key_env)")
    key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"household key in {where} is {len(key)} bytes, need >= {MIN_KEY_BYTES}")
    return key


class Pseudonymiser:
    """Callable raw household id -> pseudonym, stable for one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"household key is {len(key)} bytes, need >= {MIN_KEY_BYTES}")
        self._key = key
        self._chars = PSEUDONYM_CHARS

    def __call__(self, raw_id: str) -> str:
        if not raw_id:
            return ANONYMOUS
        return hmac.new(self._key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[: self._chars]

    def __repr__(self) -> str:  # never print the key
        return f"Pseudonymiser(chars={self._chars})"

"""Household pseudonyms: stable per key, different across keys, key loading rules."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from edge.devices.sorting_station.pseudonym import (
    ANONYMOUS,
    Pseudonymiser,
    PseudonymKeyError,
    generate_key,
    load_key,
)


def test_stable_and_keyed() -> None:
    key = generate_key().encode()
    p = Pseudonymiser(key)
    assert p("LZ-CZ-000123") == p("LZ-CZ-000123") == Pseudonymiser(key)("LZ-CZ-000123")
    assert p("LZ-CZ-000123") != p("LZ-CZ-000124")
    assert Pseudonymiser(generate_key().encode())("LZ-CZ-000123") != p("LZ-CZ-000123")
    expected = hmac.new(key, b"LZ-CZ-000123", hashlib.sha256).hexdigest()[:16]
    assert p("LZ-CZ-000123") == expected
    assert len(expected) == 16 and "000123" not in expected


def test_anonymous_and_repr_hides_key() -> None:
    key = generate_key()
    p = Pseudonymiser(key.encode())
    assert p("") == ANONYMOUS
    assert key not in repr(p)


def test_short_key_rejected() -> None:
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short")


def test_load_key_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    path = tmp_path / "household.key"
    path.write_text(key + "\n")
    assert load_key(key_file=str(path)) == key.encode()
    monkeypatch.setenv("WS_HOUSEHOLD_KEY", key)
    assert load_key(key_env="WS_HOUSEHOLD_KEY") == key.encode()


def test_load_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PseudonymKeyError, match="no household key"):
        load_key()
    with pytest.raises(PseudonymKeyError, match=r"missing\.key"):
        load_key(key_file=str(tmp_path / "missing.key"))
    monkeypatch.delenv("WS_NO_SUCH_KEY", raising=False)
    with pytest.raises(PseudonymKeyError, match="0 bytes"):
        load_key(key_env="WS_NO_SUCH_KEY")

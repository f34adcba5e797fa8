"""`webhook.verify`, the receiver's check, on what a forger or a broken proxy sends (issue 11, finding 10):
False for every bad signature or timestamp, never an exception (a receiver's 500)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.alerting.channels.webhook import signature, verify

SECRET, BODY, NOW = "hook-secret", b'{"alert_id": "a1"}', 1_750_000_000
TS = str(NOW)
GOOD = signature(SECRET, TS, BODY)


def test_a_valid_signature_passes() -> None:
    assert verify(SECRET, TS, BODY, GOOD, now=NOW)
    assert verify(SECRET, str(NOW - 299), BODY, signature(SECRET, str(NOW - 299), BODY), now=NOW)


@pytest.mark.parametrize("timestamp", [
    None, "", "abc", "1.5e9", " 1750000000", "1750000000\n", "1_750_000_000", "-1750000000",
    "١٧٥٠٠٠٠٠٠٠",  # Arabic-Indic digits: int() takes them, the signature's ASCII encoding did not
    "9" * 400,  # int() takes it, subtracting it from a float overflowed
    "9" * 5000,  # past int()'s digit limit
    str(NOW - 301), str(NOW + 301),  # stale, or from the future
])
def test_bad_timestamps_are_false(timestamp: str | None) -> None:
    header = signature(SECRET, timestamp, BODY) if timestamp and timestamp.isascii() else GOOD
    assert verify(SECRET, timestamp, BODY, header, now=NOW) is False


@pytest.mark.parametrize("header", [
    None, "", "sha256=", GOOD[:-1], GOOD + "0", GOOD.upper(), GOOD.replace("sha256=", "sha1="),
    GOOD[:-2] + "zz",  # not hex
    GOOD[:-1] + "é",  # non-ASCII: compare_digest raised TypeError on it
    "sha256=" + "0" * 64,  # well-formed, wrong
    GOOD + "\n",
])
def test_bad_signatures_are_false(header: str | None) -> None:
    assert verify(SECRET, TS, BODY, header, now=NOW) is False


def test_a_changed_body_is_false() -> None:
    assert verify(SECRET, TS, BODY + b" ", GOOD, now=NOW) is False
    assert verify("other-secret", TS, BODY, GOOD, now=NOW) is False


@settings(max_examples=300)
@given(timestamp=st.one_of(st.none(), st.text(), st.integers().map(str)),
       header=st.one_of(st.none(), st.text()), body=st.binary())
def test_never_raises(timestamp: str | None, header: str | None, body: bytes) -> None:
    assert isinstance(verify(SECRET, timestamp, body, header, now=NOW), bool)

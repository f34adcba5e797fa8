"""Issue 11, finding 6: a dead-letter record is bounded however its payload and reason escape.

180,000 bytes of 0x01 became a 1,080,200-byte record (`\\u0001` is six bytes of JSON), which Kafka
refused (1 MB) and the bridge retried forever. A record keeps a prefix of the payload with its
length, sha256 and a `truncated` flag, and bounded reason and topic texts.
"""

from __future__ import annotations

import base64
import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.deadletter import MAX_RECORD_BYTES, PAYLOAD_PREFIX_BYTES, deadletter_record

KAFKA_DEFAULT_MAX = 1_048_588  # the broker's message.max.bytes default


def test_the_issue_payload_is_a_small_record() -> None:
    payload = b"\x01" * 180_000
    raw = deadletter_record("payload of 180000 bytes exceeds 65536", "ws/v1/s/weighbridge/d/weighing",
                            payload)
    record = json.loads(raw)
    assert len(raw) <= MAX_RECORD_BYTES <= KAFKA_DEFAULT_MAX // 16
    assert record["truncated"] is True and record["payload_bytes"] == 180_000
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["payload"] == "\x01" * PAYLOAD_PREFIX_BYTES and record["payload_encoding"] == "utf-8"


def test_worst_case_escaping_everywhere_stays_bounded() -> None:
    """Every byte and character needs a six-byte `\\uXXXX` escape; reason and topic are huge."""
    controls = bytes(b for b in range(32) if b not in (9, 10, 13))  # \\t \\n \\r escape in 2 bytes
    payload = controls * 40_000
    reason = "\x1f" * 1_000_000 + "\udcff"  # a lone surrogate, as a decoder's message may carry
    raw = deadletter_record(reason, "\x00" * 70_000, payload)
    assert len(raw) <= MAX_RECORD_BYTES
    record = json.loads(raw)
    assert record["payload"].encode() == payload[:PAYLOAD_PREFIX_BYTES]
    assert record["reason"].startswith("\x1f" * 1024) and "more characters" in record["reason"]
    assert len(record["topic"]) < 600


def test_invalid_utf8_keeps_a_base64_prefix() -> None:
    payload = b"\xff\xfe" * 100_000
    record = json.loads(deadletter_record("why", "t", payload))
    assert record["payload_encoding"] == "base64" and record["truncated"] is True
    assert base64.b64decode(record["payload"]) == payload[:PAYLOAD_PREFIX_BYTES]
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_character_cut_by_the_prefix_does_not_turn_text_into_base64() -> None:
    payload = "磅单".encode() * 2000  # three bytes a character: 4096 cuts one in two
    record = json.loads(deadletter_record("why", "t", payload))
    assert record["payload_encoding"] == "utf-8" and payload.startswith(record["payload"].encode())
    assert len(record["payload"].encode()) == PAYLOAD_PREFIX_BYTES - PAYLOAD_PREFIX_BYTES % 3


def test_a_small_payload_is_kept_whole_and_whole_on_request() -> None:
    assert json.loads(deadletter_record("why", "t", b"abc"))["truncated"] is False
    big = b"x" * 100_000
    record = json.loads(deadletter_record("why", "t", big, max_payload_bytes=None, points=3))
    assert record["payload"] == big.decode() and record["truncated"] is False and record["points"] == 3


@settings(max_examples=300, deadline=None)
@given(reason=st.text(max_size=3000), topic=st.text(max_size=2000), payload=st.binary(max_size=20_000))
def test_every_record_is_json_and_bounded(reason: str, topic: str, payload: bytes) -> None:
    raw = deadletter_record(reason, topic, payload)
    record = json.loads(raw)
    assert len(raw) <= MAX_RECORD_BYTES and record["payload_bytes"] == len(payload)
    kept = (base64.b64decode(record["payload"]) if record["payload_encoding"] == "base64"
            else record["payload"].encode())
    assert payload.startswith(kept) and len(kept) >= min(len(payload), PAYLOAD_PREFIX_BYTES) - 3

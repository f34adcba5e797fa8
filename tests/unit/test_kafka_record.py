"""The Kafka record format of the event topics (contract/kafka_record.py), as documented there.

Records are built by hand from the module's description with a generic MessagePack writer (plain
maps and lists, not our structs), so the reader is checked against the documentation, not only
against our own encoder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from contract.codec import ContractError, encode
from contract.events import Deposit, Direction, WasteCategory, Weighing
from contract.jsonschema import kafka_record_schema
from contract.kafka_record import (
    MAX_MESSAGES,
    RecordError,
    decode_part,
    encode_record,
    read_messages,
    split_record,
)

TS = datetime(2026, 3, 1, 8, 30, 0, 250_000, tzinfo=UTC)


def weighing_map(seq: int, ts: Any = TS) -> dict[str, Any]:
    """A weighing as the documentation says a message of a record is: the struct's fields by name."""
    return {"type": "weighing", "msg_id": f"wb-1:1700000000:{seq}", "device_id": "wb-1", "site_id": "lz",
            "ts": ts, "ticket_id": f"T{seq}", "plate": "桂B12345", "direction": "in", "gross_kg": 30000.0,
            "tare_kg": 12000.0, "net_kg": 18000.0, "category": "kitchen", "origin": "yufeng"}


def weighing(seq: int) -> Weighing:
    return Weighing(msg_id=f"wb-1:1700000000:{seq}", device_id="wb-1", site_id="lz", ts=TS,
                    ticket_id=f"T{seq}", plate="桂B12345", direction=Direction.INBOUND, gross_kg=30000.0,
                    tare_kg=12000.0, net_kg=18000.0, category=WasteCategory.KITCHEN, origin="yufeng")


def test_a_hand_built_version_2_record_reads_as_its_messages_in_order() -> None:
    # ts as a MessagePack timestamp (a datetime makes msgspec write extension -1) and as RFC 3339 text
    messages = [weighing_map(1), weighing_map(2, "2026-03-01T16:30:00.25+08:00")]
    value = msgspec.msgpack.encode({"v": 2, "m": messages})
    assert value[:1] == b"\x82"  # a MessagePack map header, never '{'
    assert read_messages(value, Weighing) == [weighing(1), weighing(2)]
    assert [p.form for p in split_record(value)] == ["msgpack", "msgpack"]


def test_a_version_1_record_is_one_json_message() -> None:
    w = weighing(3)
    assert read_messages(encode(w)) == [w]
    assert read_messages(b"\n " + encode(w)) == [w]  # JSON whitespace first is still JSON
    assert split_record(encode(w))[0].form == "json"


def test_our_writer_writes_the_documented_form() -> None:
    value = encode_record([weighing(1), weighing(2)])
    plain = msgspec.msgpack.decode(value)
    assert plain["v"] == 2 and [m["msg_id"] for m in plain["m"]] == ["wb-1:1700000000:1", "wb-1:1700000000:2"]
    assert plain["m"][0]["type"] == "weighing" and plain["m"][0]["ts"] == TS  # a timestamp, UTC
    # the device's offset is not kept, the instant is
    local = msgspec.structs.replace(weighing(1), ts=TS.astimezone(timezone(timedelta(hours=8))))
    assert read_messages(encode_record([local]))[0].ts == TS


def test_one_bad_message_fails_alone_and_the_others_still_read() -> None:
    bad = weighing_map(2) | {"net_kg": -1.0}
    parts = split_record(msgspec.msgpack.encode({"v": 2, "m": [weighing_map(1), bad, weighing_map(3)]}))
    assert decode_part(parts[0], Weighing) == weighing(1) and decode_part(parts[2], Weighing) == weighing(3)
    with pytest.raises(ContractError, match="net_kg"):
        decode_part(parts[1], Weighing)
    with pytest.raises(ContractError, match="Invalid value 'weighing'"):  # a deposit is not a weighing
        decode_part(split_record(encode_record([weighing(1)]))[0], Deposit)


@pytest.mark.parametrize(("value", "reason"), [
    (None, "NoneType"),
    (b"", "empty"),
    (msgspec.msgpack.encode({"v": 3, "m": [weighing_map(1)]}), "version 3"),
    (msgspec.msgpack.encode({"v": 2, "m": []}), "0 messages"),
    (msgspec.msgpack.encode({"v": 2, "m": [weighing_map(1)] * (MAX_MESSAGES + 1)}), "1001 messages"),
    (msgspec.msgpack.encode({"v": 2, "m": [weighing_map(1)], "x": 1}), "not a version-1"),
    (msgspec.msgpack.encode([1, 2]), "not a version-1"),
    (b"\xc1garbage", "not a version-1"),
    (b"\x91" * 100_000, "not a version-1"),  # deeply nested arrays
])
def test_an_unreadable_frame_is_refused_whole_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        split_record(value)


def _without_patterns(node: Any) -> Any:
    """The schema minus its text patterns: ECMA-262 `\\u{...}` escapes, which this validator's regex
    engine does not take (test_contract_text checks the patterns against the decoder)."""
    if isinstance(node, dict):
        return {k: _without_patterns(v) for k, v in node.items() if k != "pattern"}
    if isinstance(node, list):
        return [_without_patterns(v) for v in node]
    return node


def test_the_json_schema_accepts_a_record_and_refuses_a_bad_one() -> None:
    validator = jsonschema_rs.validator_for(_without_patterns(kafka_record_schema()))
    decoded = msgspec.to_builtins(msgspec.msgpack.decode(encode_record([weighing(1), weighing(2)])))
    assert validator.is_valid(decoded)
    assert not validator.is_valid({"v": 1, "m": decoded["m"]})
    assert not validator.is_valid({"v": 2, "m": []})
    assert not validator.is_valid({"v": 2, "m": [decoded["m"][0] | {"net_kg": "heavy"}]})

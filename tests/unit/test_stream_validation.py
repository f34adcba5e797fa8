"""The bridge's gate: only a message whose topic and payload agree reaches its Kafka topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contract import Deposit, Weighing, encode, mqtt_topic
from contract.events import Direction, Verdict, VerdictSource, WasteCategory
from contract.msgid import parse_msg_id
from stream.deadletter import deadletter_record
from stream.validation import EPOCH_AHEAD_S, Rejection, Routed, validate

TS = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def weighing(**overrides: object) -> Weighing:
    fields: dict[str, object] = dict(
        msg_id="wb-1:1700000000:7", device_id="wb-1", site_id="site-a", ts=TS, ticket_id="T0001",
        plate="沪A12345", direction=Direction.INBOUND, gross_kg=30000.0, tare_kg=12000.0,
        net_kg=18000.0, category=WasteCategory.KITCHEN, origin="district-3",
    )
    fields.update(overrides)
    return Weighing(**fields)  # type: ignore[arg-type]


TOPIC = mqtt_topic("site-a", "weighbridge", "wb-1", "weighing")


def test_valid_weighing_is_routed_with_original_bytes_and_site_device_key() -> None:
    payload = encode(weighing())
    assert validate(TOPIC, payload) == Routed("ws.weighings", b"site-a/wb-1", payload, "site-a",
                                              "wb-1:1700000000:7", weighing())  # + the decoded message


def test_two_sites_with_the_same_device_id_get_different_kafka_keys() -> None:
    """Finding 5: device ids are unique within a site only; the key (and every table) has both."""
    a = validate(TOPIC, encode(weighing()))
    b = validate(mqtt_topic("site-b", "weighbridge", "wb-1", "weighing"), encode(weighing(site_id="site-b")))
    assert isinstance(a, Routed) and isinstance(b, Routed) and a.msg_id == b.msg_id
    assert (a.key, b.key) == (b"site-a/wb-1", b"site-b/wb-1")


@pytest.mark.parametrize("msg_id", ["wb-1:1_0:2", "wb-1: 1:\n2", "wb-1:１:2", "wb-1:1:2\n", "wb-1:+1:2",
                                    "wb-1:01:2", "wb-1:1:٣", "wb-1:99999999999:1", "wb-1:1:" + "9" * 16])
def test_msg_ids_are_parsed_strictly(msg_id: str) -> None:
    """Finding 4: Python's int() takes `1_0`, ` 1\n`, full-width and Arabic-Indic digits."""
    with pytest.raises(ValueError, match="device:epoch:seq"):
        parse_msg_id(msg_id)
    result = validate(TOPIC, encode(weighing(msg_id=msg_id)))
    assert isinstance(result, Rejection) and "msg_id" in result.reason, result
    assert result.msg_id is None  # not a trustworthy id: nothing is confirmed under it


NOW = 1_772_323_200.0


@pytest.mark.parametrize(("epoch", "ok"), [(NOW, True), (NOW + EPOCH_AHEAD_S, True), (1, True),
                                           (NOW + EPOCH_AHEAD_S + 1, False), (9_999_999_999, False)])
def test_an_epoch_after_tomorrow_is_refused_with_a_reason(epoch: float, ok: bool) -> None:
    """Finding 4: the epoch is the outbox's creation time, so it cannot be far after now; a forged
    `wb1:99999999999:1` once made every later genuine ticket of the device a duplicate."""
    msg_id = f"wb-1:{int(epoch)}:1"
    result = validate(TOPIC, encode(weighing(msg_id=msg_id)), now_s=NOW)
    if ok:
        assert isinstance(result, Routed), result
    else:
        assert isinstance(result, Rejection) and "after the bridge's clock" in result.reason
        assert (result.site_id, result.msg_id) == ("site-a", msg_id)  # dead-lettered: edge is told


def test_original_bytes_are_kept_even_when_not_canonical() -> None:
    payload = json.dumps(json.loads(encode(weighing())), indent=2, ensure_ascii=False).encode()
    result = validate(TOPIC, payload)
    assert isinstance(result, Routed) and result.payload is payload


def test_deposit_goes_to_its_own_topic() -> None:
    dep = Deposit(msg_id="ss-9:1:1", device_id="ss-9", site_id="c-1", ts=TS, community_id="c-1",
                  bin=WasteCategory.RECYCLABLE, kg=1.5, household="a1b2c3d4e5f6a7b8",
                  verdict=Verdict.CORRECT, verdict_source=VerdictSource.CAMERA)
    result = validate(mqtt_topic("c-1", "sorting_station", "ss-9", "deposit"), encode(dep))
    assert isinstance(result, Routed) and result.kafka_topic == "ws.deposits"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (mqtt_topic("site-a", "weighbridge", "wb-2", "weighing"), encode(weighing()), "device_id"),
        (mqtt_topic("site-b", "weighbridge", "wb-1", "weighing"), encode(weighing()), "site_id"),
        (mqtt_topic("site-a", "weighbridge", "wb-1", "device_status"), encode(weighing()), "topic event"),
        (TOPIC, b'{"type": "weighing", "msg_id": ', "malformed JSON"),
        (TOPIC, b"\xff\xfe not utf-8", "malformed JSON"),
        (TOPIC, encode(weighing(schema=2)), "schema version"),
        (TOPIC, encode(weighing()).replace(b'"weighing"', b'"teleport"'), "invalid message"),
        (TOPIC, encode(weighing(msg_id="wb-9:1:1")), "does not belong"),
        (TOPIC, encode(weighing(msg_id="no-seq")), "device:epoch:seq"),
        ("ws/v1/site-a/weighbridge/wb-1/teleport", encode(weighing()), "unknown event"),
        ("ws/v1/site-a/weighbridge/wb-1/alert", encode(weighing()), "unknown event"),
        ("ws/v1/site-a/weighbridge/wb-1", encode(weighing()), "bad topic"),
        ("other/site-a/weighbridge/wb-1/weighing", encode(weighing()), "bad topic"),
    ],
)
def test_rejections_carry_a_reason(topic: str, payload: bytes, reason: str) -> None:
    result = validate(topic, payload)
    assert isinstance(result, Rejection), result
    assert reason in result.reason


def test_inconsistent_net_is_rejected() -> None:
    payload = encode(weighing()).replace(b'"net_kg":18000.0', b'"net_kg":9000.0')
    result = validate(TOPIC, payload)
    assert isinstance(result, Rejection) and "net_kg" in result.reason


def test_deadletter_record_keeps_text_or_base64() -> None:
    rec = json.loads(deadletter_record("why", "t", "磅单".encode()))
    assert rec["payload"] == "磅单" and rec["payload_encoding"] == "utf-8" and rec["reason"] == "why"
    rec = json.loads(deadletter_record("why", "t", b"\xff\x00"))
    assert rec["payload"] == "/wA=" and rec["payload_encoding"] == "base64"
    assert rec["received_at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TOPIC, encode(weighing(schema=2))),
        (TOPIC, encode(weighing()).replace(b'"net_kg":18000.0', b'"net_kg":9000.0')),
        (mqtt_topic("site-a", "weighbridge", "wb-1", "device_status"), encode(weighing())),
        (TOPIC, encode(weighing(site_id="site-b"))),
    ],
)
def test_rejection_keeps_the_msg_id_the_edge_waits_for(topic: str, payload: bytes) -> None:
    """Dead-lettered is delivered: the edge is told (contract.acks) and stops re-sending."""
    result = validate(topic, payload)
    assert isinstance(result, Rejection)
    assert (result.site_id, result.msg_id) == ("site-a", "wb-1:1700000000:7")


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TOPIC, b'{"type": "weighing", "msg_id": '),
        (TOPIC, encode(weighing(msg_id="wb-9:1:1"))),  # another device's id: not ours to confirm
        (TOPIC, encode(weighing(msg_id="no-seq"))),
        ("ws/v1/site-a/weighbridge/wb-1", encode(weighing())),
    ],
)
def test_rejection_without_a_trustworthy_msg_id_confirms_nothing(topic: str, payload: bytes) -> None:
    result = validate(topic, payload)
    assert isinstance(result, Rejection) and result.msg_id is None and result.site_id is None

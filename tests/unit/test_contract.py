"""The contract is what vendors and every stage rely on: valid messages round-trip, bad ones say why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contract import ContractError, Weighing, decode, encode, make_msg_id, mqtt_topic, parse_msg_id
from contract.events import EVENT_TYPES, WasteCategory
from contract.jsonschema import contract_schema
from contract.topics import TopicError, parse_mqtt_topic, shared_subscription


def ticket(**overrides: object) -> Weighing:
    fields: dict[str, object] = dict(
        msg_id=make_msg_id("wb-1", 1700000000, 7),
        device_id="wb-1",
        site_id="lz-jm-incinerator",
        ts=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
        ticket_id="wb-1-000007",
        plate="桂BH1021",
        direction="in",
        gross_kg=24000.0,
        tare_kg=12400.0,
        net_kg=11600.0,
        category=WasteCategory.RESIDUAL,
        origin="chengzhong",
    )
    fields.update(overrides)
    return Weighing(**fields)  # type: ignore[arg-type]


def test_weighing_round_trips_with_chinese_plate() -> None:
    original = ticket()
    decoded = decode(encode(original))
    assert decoded == original
    assert json.loads(encode(original))["type"] == "weighing"


def as_dict(event: Weighing) -> dict[str, object]:
    return json.loads(encode(event))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("msg_id"), "missing required field `msg_id`"),
        (lambda d: d.update(gross_kg="heavy"), "Expected `float`"),
        (lambda d: d.update(gross_kg=9e9), "<= 200000.0"),
        (lambda d: d.update(net_kg=1.0), "net_kg is not gross_kg - tare_kg"),
        (lambda d: d.update(tare_kg=30000.0, net_kg=-6000.0), ">= 0.0"),
        (lambda d: d.update(ts="2026-11-27T08:00:00"), "timezone"),
        (lambda d: d.update(schema=2), "schema version 2"),
        (lambda d: d.update(extra="x"), "unknown field `extra`"),
        (lambda d: d.update(type="nonsense"), "Invalid value 'nonsense'"),
        (lambda d: d.update(category="plutonium"), "Invalid enum value 'plutonium'"),
        (lambda d: d.update(device_id="wb/1"), "matching regex"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    data = as_dict(ticket())
    mutate(data)
    with pytest.raises(ContractError) as info:
        decode(json.dumps(data).encode())
    assert reason in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"{", b"\xff\xfe", b"[]", b"null", b"x" * 70_000])
def test_garbage_is_rejected_not_crashing(payload: bytes) -> None:
    with pytest.raises(ContractError):
        decode(payload)


def test_typed_decode_refuses_other_event_types() -> None:
    from contract.events import DeviceStatus

    with pytest.raises(ContractError):
        decode(encode(ticket()), DeviceStatus)


def test_msg_id_orders_by_epoch_then_seq() -> None:
    assert parse_msg_id(make_msg_id("wb-1", 5, 12)) == ("wb-1", 5, 12)
    for bad in ("wb-1", "a:b:1:2"):  # the device part is an Ident: no ':' (strict, issue 11 finding 4)
        with pytest.raises(ValueError):
            parse_msg_id(bad)


def test_topics() -> None:
    topic = mqtt_topic("lz-jm-incinerator", "weighbridge", "wb-1", "weighing")
    assert topic == "ws/v1/lz-jm-incinerator/weighbridge/wb-1/weighing"
    assert parse_mqtt_topic(topic).device_id == "wb-1"
    assert shared_subscription() == "$share/bridge/ws/v1/+/+/+/+"
    for bad in ["ws/v1/a/weighbridge/b", "ws/v2/a/weighbridge/b/weighing", "ws/v1/a/toaster/b/weighing",
                "ws/v1/a/weighbridge/b/alert", "ws/v1/a/weighbridge/+/weighing"]:
        with pytest.raises(TopicError):
            parse_mqtt_topic(bad)
    with pytest.raises(TopicError):
        mqtt_topic("a/b", "weighbridge", "wb", "weighing")


def test_json_schema_describes_every_event() -> None:
    schema = contract_schema()
    assert set(EVENT_TYPES) <= {d["properties"]["type"]["enum"][0] for d in schema["$defs"].values()
                                if "type" in d.get("properties", {})}
    weighing = schema["$defs"]["Weighing"]
    assert weighing["additionalProperties"] is False
    assert {"msg_id", "device_id", "site_id", "ts", "net_kg"} <= set(weighing["required"])

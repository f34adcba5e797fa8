"""Issue 11, finding 1: the bridge's whole per-message path never raises, whatever arrives.

`stream.bridge.prepare` is what the bridge runs for every MQTT message (validate, then route or
build the dead-letter record). A `device_status` with 1,000 nested arrays made msgspec raise
RecursionError out of it, and the bridge exited on every redelivery. Here: arbitrary bytes and
topics, and JSON nested up to depth 10,000 (as the whole payload, in an unknown field and in a
known one), each ends routed or as a valid JSON dead-letter record with a reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import DeviceStatus, encode
from contract.events import DeviceState
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS
from stream.bridge import Inbound, Outbound, prepare
from stream.deadletter import MAX_RECORD_BYTES

TOPIC = "ws/v1/s1/weighbridge/wb1/device_status"
EVENT_TOPICS = set(KAFKA_TOPICS.values()) - {DEADLETTER_TOPIC}


def status() -> bytes:
    return encode(DeviceStatus(msg_id="wb1:1:1", device_id="wb1", site_id="s1", ts=datetime.now(UTC),
                               state=DeviceState.ONLINE))


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_field(payload: bytes, field: str, value: bytes) -> bytes:
    """`payload` (a JSON object) with `"field": value` as its first member."""
    return b'{"%s":%s,%s' % (field.encode(), value, payload[1:])


def item(topic: str, payload: bytes) -> Inbound:
    return Inbound(topic, payload, mid=1, qos=1, generation=1, confirm=True)


def check(out: Outbound) -> None:
    """Routed to an event topic, or a bounded dead-letter record that is JSON with a reason."""
    assert isinstance(out, Outbound)
    if out.reason is None:
        assert out.topic in EVENT_TOPICS and out.value == out.item.payload
        return
    assert out.topic == DEADLETTER_TOPIC and out.reason
    record = json.loads(out.value)
    assert record["reason"] and len(out.value) <= MAX_RECORD_BYTES


def test_the_issue_poison_message_is_dead_lettered_with_its_reason() -> None:
    poison = with_field(status(), "x", nested(1000, "array"))
    assert 2000 < len(poison) < 2300  # the issue's 2 KB message
    out = prepare(item(TOPIC, poison))
    check(out)
    assert out.reason is not None and "recursion" in out.reason.lower()
    assert json.loads(out.value)["topic"] == TOPIC


def test_a_valid_message_is_still_routed() -> None:
    out = prepare(item(TOPIC, status()))
    assert out.reason is None and out.topic == KAFKA_TOPICS["device_status"] and out.key
    assert b"wb1" in out.key


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.one_of(st.just(TOPIC), st.text(max_size=300)), payload=st.binary(max_size=5000))
def test_arbitrary_bytes_on_any_topic_never_raise(topic: str, payload: bytes) -> None:
    check(prepare(item(topic, payload)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 10_000), kind=st.sampled_from(["array", "object"]),
       where=st.sampled_from(["whole", "unknown field", "known field", "msg_id"]))
def test_json_nested_up_to_depth_10000_never_raises(depth: int, kind: str, where: str) -> None:
    value = nested(depth, kind)
    payload = {"whole": value, "unknown field": with_field(status(), "x", value),
               "known field": status().replace(b'"online"', value),
               "msg_id": status().replace(b'"wb1:1:1"', value)}[where]
    out = prepare(item(TOPIC, payload))
    check(out)
    if where != "whole" or depth > 1:
        assert out.reason is not None  # nothing nested is a valid device_status


def deepest_call() -> int:
    """How many more frames this stack takes (found by trying: C frames count too)."""
    def down(n: int) -> int:
        try:
            return down(n + 1)
        except RecursionError:
            return n
    return down(0)


def test_never_raises_even_at_the_edge_of_the_recursion_limit() -> None:
    """Called deep in a stack (the bridge runs inside asyncio, paho and uvloop frames), even
    building the dead-letter record can hit the limit: the message is still dead-lettered."""
    poison, good = item(TOPIC, with_field(status(), "x", nested(1000, "array"))), item(TOPIC, status())
    outs: list[Outbound] = []

    def at_depth(n: int) -> None:
        if n > 0:
            at_depth(n - 1)
            return
        outs.append(prepare(poison))
        outs.append(prepare(good))

    free = deepest_call()
    for headroom in (400, 100, 40, 20, 10):  # below 10 frames nothing at all can run
        at_depth(free - headroom)
    for out in outs:
        check(out)
    assert all(out.reason is not None for out in outs[::2])


def test_the_poison_is_refused_by_the_contract_not_by_the_last_resort() -> None:
    """The contract's own reason, not 'internal error': an operator reads what was wrong."""
    out = prepare(item(TOPIC, with_field(status(), "x", nested(1000, "array"))))
    assert out.reason is not None and not out.reason.startswith("internal error")

"""Topic names: MQTT `ws/v1/{site}/{kind}/{device}/{event}` and one Kafka topic per event type."""

from __future__ import annotations

import re
from typing import NamedTuple

MQTT_PREFIX = "ws/v1"
MQTT_SUBSCRIBE_ALL = f"{MQTT_PREFIX}/+/+/+/+"
MQTT_SHARE_GROUP = "bridge"

KIND_EVENTS: dict[str, frozenset[str]] = {
    "weighbridge": frozenset({"weighing", "device_status"}),
    "sorting_station": frozenset({"deposit", "bin_level", "device_status"}),
    "truck": frozenset({"truck_telemetry", "device_status"}),
    "jt808": frozenset({"truck_telemetry", "device_status"}),
}
"""What each kind of device publishes. The topic's kind must agree with its event as its site and
device must agree with the payload: a weighing on a truck topic comes from a misconfigured or
hostile publisher, and is refused rather than routed as a ticket. Every kind may publish
device_status: the edge agent reports its own status on `{site}-edge` under the kind of its first
device (edge/agent.py)."""
DEVICE_KINDS = tuple(KIND_EVENTS)

KAFKA_TOPICS: dict[str, str] = {
    "weighing": "ws.weighings",
    "deposit": "ws.deposits",
    "bin_level": "ws.bin-levels",
    "truck_telemetry": "ws.truck-telemetry",
    "device_status": "ws.device-status",
    "alert": "ws.alerts",
}
DEADLETTER_TOPIC = "ws.deadletter"
ALL_KAFKA_TOPICS = (*KAFKA_TOPICS.values(), DEADLETTER_TOPIC)

_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\Z")  # \Z: `$` also matches before a final newline


class TopicError(ValueError):
    """A topic that does not follow the contract."""


class MqttTopic(NamedTuple):
    site_id: str
    kind: str
    device_id: str
    event: str


def mqtt_topic(site_id: str, kind: str, device_id: str, event: str) -> str:
    """The topic a device publishes `event` messages on (checked: no wildcards, no slashes)."""
    for segment in (site_id, kind, device_id, event):
        if not _SEGMENT.match(segment):
            raise TopicError(f"bad topic segment {segment!r}")
    return f"{MQTT_PREFIX}/{site_id}/{kind}/{device_id}/{event}"


def shared_subscription(group: str = MQTT_SHARE_GROUP) -> str:
    """MQTT 5 shared subscription so several bridges split the load."""
    return f"$share/{group}/{MQTT_SUBSCRIBE_ALL}"


def parse_mqtt_topic(topic: str) -> MqttTopic:
    """Split a device topic; raises TopicError with the reason when it is not one."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != MQTT_PREFIX:
        raise TopicError(f"topic {topic!r} is not {MQTT_PREFIX}/site/kind/device/event")
    site_id, kind, device_id, event = parts[2:]
    if kind not in DEVICE_KINDS:
        raise TopicError(f"unknown device kind {kind!r} in topic")
    if event not in KAFKA_TOPICS or event == "alert":
        raise TopicError(f"unknown event {event!r} in topic")
    if event not in KIND_EVENTS[kind]:
        allowed = ", ".join(sorted(KIND_EVENTS[kind]))
        raise TopicError(f"a {kind} does not publish {event} (only {allowed})")
    for segment in (site_id, device_id):
        if not _SEGMENT.match(segment):
            raise TopicError(f"bad topic segment {segment!r}")
    return MqttTopic(site_id, kind, device_id, event)


def kafka_topic(event: str) -> str:
    return KAFKA_TOPICS[event]

"""The bridge's gate: a device message is routed to Kafka only if topic and payload agree.

Pure (no I/O) so it is unit-tested exhaustively; the bridge calls it per message.
"""

from __future__ import annotations

from typing import NamedTuple

from contract.codec import ContractError, decode
from contract.msgid import parse_msg_id
from contract.topics import TopicError, kafka_topic, parse_mqtt_topic


class Routed(NamedTuple):
    """A valid message: where it goes in Kafka, its key, and the original bytes (never re-encoded)."""

    kafka_topic: str
    key: bytes
    payload: bytes


class Rejection(NamedTuple):
    reason: str


def validate(topic: str, payload: bytes) -> Routed | Rejection:
    """Route a message, or say why not. A topic that disagrees with its payload is spoofing."""
    try:
        parsed = parse_mqtt_topic(topic)
    except TopicError as exc:
        return Rejection(f"bad topic: {exc}")
    try:
        event = decode(payload)
    except ContractError as exc:
        return Rejection(str(exc))
    if event.event != parsed.event:
        return Rejection(f"payload type {event.event!r} does not match topic event {parsed.event!r}")
    if event.device_id != parsed.device_id:
        return Rejection(
            f"payload device_id {event.device_id!r} does not match topic device {parsed.device_id!r}"
        )
    if event.site_id != parsed.site_id:
        return Rejection(f"payload site_id {event.site_id!r} does not match topic site {parsed.site_id!r}")
    try:
        msg_device = parse_msg_id(event.msg_id).device_id
    except ValueError:
        return Rejection(f"msg_id {event.msg_id!r} is not device:epoch:seq")
    if msg_device != event.device_id:
        return Rejection(f"msg_id {event.msg_id!r} does not belong to device {event.device_id!r}")
    return Routed(kafka_topic(parsed.event), event.device_id.encode("utf-8"), payload)

"""The bridge's gate: a device message is routed to Kafka only if topic and payload agree.

Pure (no I/O) so it is unit-tested exhaustively; the bridge calls it per message.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from contract.codec import ContractError, decode
from contract.msgid import parse_msg_id
from contract.topics import TopicError, kafka_topic, parse_mqtt_topic


class Routed(NamedTuple):
    """A valid message: where it goes in Kafka, its key, and the original bytes (never re-encoded).

    `site_id` and `msg_id` address the pipeline confirmation (contract.acks) to the edge."""

    kafka_topic: str
    key: bytes
    payload: bytes
    site_id: str = ""
    msg_id: str = ""


class Rejection(NamedTuple):
    """Why a message goes to the dead-letter topic; `site_id`/`msg_id` when they could still be
    read and agree with the topic (so the edge is told the pipeline has it and stops re-sending)."""

    reason: str
    site_id: str | None = None
    msg_id: str | None = None


class _IdOnly(msgspec.Struct):
    msg_id: str


_id_decoder = msgspec.json.Decoder(_IdOnly)


def validate(topic: str, payload: bytes) -> Routed | Rejection:
    """Route a message, or say why not. A topic that disagrees with its payload is spoofing."""
    try:
        parsed = parse_mqtt_topic(topic)
    except TopicError as exc:
        return Rejection(f"bad topic: {exc}")
    try:
        event = decode(payload)
    except ContractError as exc:
        return _rejected(str(exc), parsed.site_id, parsed.device_id, payload)
    if event.event != parsed.event:
        return _rejected(f"payload type {event.event!r} does not match topic event {parsed.event!r}",
                         parsed.site_id, parsed.device_id, payload)
    if event.device_id != parsed.device_id:
        return Rejection(
            f"payload device_id {event.device_id!r} does not match topic device {parsed.device_id!r}"
        )
    if event.site_id != parsed.site_id:
        return _rejected(f"payload site_id {event.site_id!r} does not match topic site {parsed.site_id!r}",
                         parsed.site_id, parsed.device_id, payload)
    try:
        msg_device = parse_msg_id(event.msg_id).device_id
    except ValueError:
        return Rejection(f"msg_id {event.msg_id!r} is not device:epoch:seq")
    if msg_device != event.device_id:
        return Rejection(f"msg_id {event.msg_id!r} does not belong to device {event.device_id!r}")
    return Routed(kafka_topic(parsed.event), event.device_id.encode("utf-8"), payload,
                  parsed.site_id, event.msg_id)


def _rejected(reason: str, site_id: str, device_id: str, payload: bytes) -> Rejection:
    """A rejection that still names its msg_id when the payload has one of the topic's device."""
    try:
        msg_id = _id_decoder.decode(payload).msg_id
        owner = parse_msg_id(msg_id).device_id
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return Rejection(reason)
    if owner != device_id:
        return Rejection(reason)
    return Rejection(reason, site_id, msg_id)

"""The bridge's gate: a device message is routed to Kafka only if topic and payload agree.

Pure (no I/O; the clock is a parameter) so it is unit-tested exhaustively; the bridge calls it
per message. Routed records are keyed `site/device` (contract.msgid.device_key): device ids are
unique within a site only, and every agent's table is keyed like its source topic.

The msg_id's epoch is the creation time of the device's outbox (edge/outbox.py, Unix seconds of
the agent host, NTP-synced in production), so it is never far after now. An epoch more than
`EPOCH_AHEAD_S` (1 day) after the bridge's clock is refused: it could only be forged, or come
from an edge host whose clock was set wrong when it created its outbox. A day is far above any
NTP drift or a hand-set clock's timezone mistake (at most 14 h), and refusing loses nothing
silently: the message and its reason go to the dead-letter topic, and the edge is confirmed as
for any rejection it can be told about (the dead-letter topic has it; re-sending cannot help).
The remedy for such a box is to set its clock and recreate its outbox: its new, lower epoch is
then accepted as new by the dedup mark (stream/dedup.py); the dead-lettered messages can be
re-published from the dead-letter topic by the operator.

Cost (issue 14: the bridge's CPU per message): the payload is decoded as the type its topic names
(msgspec's decoder of one struct takes half the time of the six types' union; it is a union with
`_NotAnEvent` so that the `type` tag stays required); only a payload that fails is decoded again
as any message, so that its reason is the one any message gets (a wrong type
is named as such). A topic's parse, Kafka topic and key are remembered (`_route_of`), as devices
repeat.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import msgspec

from contract.codec import ContractError, decode
from contract.events import EVENT_TYPES, Envelope
from contract.msgid import MsgKey, device_key, parse_msg_id
from contract.topics import MqttTopic, TopicError, kafka_topic, parse_mqtt_topic


class Routed(NamedTuple):
    """A valid message: where it goes in Kafka, its key, and the original bytes (never re-encoded).

    `site_id` and `msg_id` address the pipeline confirmation (contract.acks) to the edge;
    `message` is the decoded payload, which the bridge writes into a Kafka record
    (contract.kafka_record)."""

    kafka_topic: str
    key: bytes
    payload: bytes
    site_id: str = ""
    msg_id: str = ""
    message: Envelope | None = None


class Rejection(NamedTuple):
    """Why a message goes to the dead-letter topic; `site_id`/`msg_id` when they could still be
    read and agree with the topic (so the edge is told the pipeline has it and stops re-sending)."""

    reason: str
    site_id: str | None = None
    msg_id: str | None = None


EPOCH_AHEAD_S = 86_400
"""How far after the bridge's clock a msg_id's epoch (an outbox's creation time) may be."""


class _IdOnly(msgspec.Struct):
    msg_id: str


_id_decoder = msgspec.json.Decoder(_IdOnly)

TOPICS_REMEMBERED = 65_536
"""Valid MQTT topics whose parse `_route_of` keeps (least recently used go first)."""


class _NotAnEvent(Envelope, frozen=True, tag="\x00not an event"):
    """Never routed: each event type's decoder is a tagged union of it and this, as a union
    requires the `type` tag (a struct decoded alone takes a message without its tag)."""


_DECODE_AS: dict[str, Any] = {event: cls | _NotAnEvent for event, cls in EVENT_TYPES.items()}


class _Route(NamedTuple):
    topic: MqttTopic
    kafka_topic: str
    key: bytes
    event_type: type[Envelope]
    decode_as: Any
    """`event_type | _NotAnEvent`, for contract.codec.decode."""


@functools.lru_cache(maxsize=TOPICS_REMEMBERED)
def _route_of(topic: str) -> _Route:
    """Where a device topic's messages go (TopicError, not remembered, when it is not one)."""
    parsed = parse_mqtt_topic(topic)
    return _Route(parsed, kafka_topic(parsed.event),
                  device_key(parsed.site_id, parsed.device_id).encode("utf-8"), EVENT_TYPES[parsed.event],
                  _DECODE_AS[parsed.event])


def validate(topic: str, payload: bytes, now_s: float | None = None) -> Routed | Rejection:
    """Route a message, or say why not. A topic that disagrees with its payload is spoofing.

    `now_s`: the bridge's clock (Unix seconds; default: now) for the epoch check."""
    try:
        route = _route_of(topic)
    except TopicError as exc:
        return Rejection(f"bad topic: {exc}")
    parsed = route.topic
    try:
        event = decode(payload, route.decode_as)
        if type(event) is not route.event_type:
            raise ContractError("not of the topic's type")
    except ContractError:
        try:  # the reason any message gets, e.g. that its type is not the topic's
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
        key = parse_msg_id(event.msg_id)
    except ValueError as exc:
        return Rejection(str(exc))
    if key.device_id != event.device_id:
        return Rejection(f"msg_id {event.msg_id!r} does not belong to device {event.device_id!r}")
    ahead = _epoch_ahead(key, time.time() if now_s is None else now_s)
    if ahead is not None:
        return Rejection(ahead, parsed.site_id, event.msg_id)
    return Routed(route.kafka_topic, route.key, payload, parsed.site_id, event.msg_id, event)


def _epoch_ahead(key: MsgKey, now_s: float) -> str | None:
    """Why the msg_id's epoch is implausible (after now + `EPOCH_AHEAD_S`), or None."""
    ahead = key.epoch - now_s
    if ahead <= EPOCH_AHEAD_S:
        return None
    return (f"msg_id epoch {key.epoch} is {ahead / 86_400:.1f} days after the bridge's clock: an outbox "
            f"cannot be created in the future (forged id, or the edge's clock was wrong when it created "
            f"its outbox; allowed {EPOCH_AHEAD_S} s)")


def _rejected(reason: str, site_id: str, device_id: str, payload: bytes) -> Rejection:
    """A rejection that still names its msg_id when the payload has one of the topic's device."""
    try:
        msg_id = _id_decoder.decode(payload).msg_id
        owner = parse_msg_id(msg_id).device_id
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        return Rejection(reason)
    if owner != device_id:
        return Rejection(reason)
    return Rejection(reason, site_id, msg_id)

"""Kafka records of the event topics: how contract messages travel inside Kafka (issue 14).

MQTT carries one UTF-8 JSON contract message per PUBLISH (contract.events). Inside Kafka a record
of an event topic (ws.weighings, ws.deposits, ws.bin-levels, ws.truck-telemetry, ws.device-status)
is one of two versions; `split_record` tells them apart by the first byte and every reader of
these topics (the workers, tests, a city's data lake) reads both:

- **version 1** (written before issue 14, and by anything producing single messages): the value
  is one contract message as UTF-8 JSON, an object, so its first byte is `{` (or JSON whitespace);
  keyed `site/device`.
- **version 2** (the bridge writes these): the value is a MessagePack map `{"v": 2, "m": [...]}`
  whose `m` holds 1 to `MAX_MESSAGES` contract messages, each the MessagePack map of the same
  struct (same field names and `type` tag, same constraints), with `ts` a MessagePack timestamp
  (extension -1, UTC: the device's offset is not kept; an RFC 3339 string is read too). Its first
  byte is a MessagePack map header (0x80-0x8f, 0xde, 0xdf). Every message of a record is of the
  topic's event type and of one partition: the bridge groups messages by the partition Kafka's
  default partitioner (murmur2) gives their `site/device` key, so a device's messages stay on
  one partition in their order, the record's key is `~p{partition}` and its partition is given
  explicitly. Messages of one device keep their order inside a record and across records.

Why: a Faust event costs ~140 us of CPU whatever it holds, and MessagePack decodes about four
times faster than the JSON form (no RFC 3339 parsing). JSON Schema: `wastestream schema
--kafka-record` (contract.jsonschema.kafka_record_schema), of the record decoded into the JSON
data model. Dead-letter records (ws.deadletter) and alerts (ws.alerts) stay JSON, one per record.

A record is read message by message: one that fails the contract is reported alone (the workers
dead-letter it with its reason and go on with the others); only a record whose frame is not
readable at all is refused whole. `read_messages` is the one call an external consumer needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import msgspec

from contract.codec import ContractError, decode, decode_msgpack
from contract.events import AnyEvent, Envelope

RECORD_VERSION = 2
"""The version the bridge writes; `split_record` also reads version 1."""
MAX_MESSAGES = 1000
"""Messages in one version-2 record at most."""
MAX_RECORD_BYTES = 512 * 1024
"""A writer starts a new record before this: half of Kafka's default `max.message.bytes`."""

E = TypeVar("E", bound=Envelope)


class RecordError(ContractError):
    """A record whose frame cannot be read (no message of it can be); `str()` is the reason."""


class Part(NamedTuple):
    """One message of a record, not decoded yet: its bytes and their form (`json`, `msgpack`)."""

    raw: bytes
    form: str


class _Frame(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    m: list[msgspec.Raw]


_frame_decoder = msgspec.msgpack.Decoder(_Frame)
_encoder = msgspec.msgpack.Encoder()
_JSON_START = frozenset(b'{ \t\r\n')


class _Out(msgspec.Struct, frozen=True):
    v: int
    m: Sequence[Envelope | msgspec.Raw]


def encode_record(messages: Sequence[Envelope]) -> bytes:
    """A version-2 record of `messages` (1 to MAX_MESSAGES; the caller bounds its size)."""
    return _frame(messages)


def encode_message(message: Envelope) -> bytes:
    """One message in its record form (MessagePack): `frame_record` takes these, and their
    lengths are what a writer adds up for the size bound."""
    return _encoder.encode(message)


def frame_record(encoded: Sequence[bytes]) -> bytes:
    """A version-2 record of messages already encoded by `encode_message` (each encoded once)."""
    return _frame([msgspec.Raw(b) for b in encoded])


def _frame(messages: Sequence[Envelope | msgspec.Raw]) -> bytes:
    if not 0 < len(messages) <= MAX_MESSAGES:
        raise ValueError(f"{len(messages)} messages in one record; 1 to {MAX_MESSAGES}")
    return _encoder.encode(_Out(RECORD_VERSION, messages))


def split_record(value: bytes | bytearray | memoryview | None) -> list[Part]:
    """The messages of a record in their order, undecoded; RecordError when its frame is unreadable."""
    if value is None:
        raise RecordError("record value is NoneType, not bytes (a tombstone)")
    data = bytes(value)
    if not data:
        raise RecordError("record value is empty")
    if data[0] in _JSON_START:
        return [Part(data, "json")]
    try:
        frame = _frame_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordError(f"not a version-1 (JSON) or version-2 (MessagePack) record: {exc}") from None
    except RecursionError:
        raise RecordError("record nested deeper than the decoder's recursion limit") from None
    if frame.v != RECORD_VERSION:
        raise RecordError(f"record version {frame.v} is not {RECORD_VERSION}")
    if not 0 < len(frame.m) <= MAX_MESSAGES:
        raise RecordError(f"{len(frame.m)} messages in a record; 1 to {MAX_MESSAGES}")
    return [Part(bytes(raw), "msgpack") for raw in frame.m]


def decode_part(part: Part, type_: type[E] | None = None) -> E | AnyEvent:
    """One message of a record, checked as `contract.decode` checks MQTT payloads (ContractError)."""
    if part.form == "json":
        return decode(part.raw, type_)
    return decode_msgpack(part.raw, type_)


def read_messages(value: bytes | bytearray | memoryview | None, type_: type[E] | None = None
                  ) -> list[E | AnyEvent]:
    """Every contract message of a record of any supported version, in order (for consumers
    outside the pipeline); ContractError (RecordError for the frame) at the first bad one."""
    return [decode_part(part, type_) for part in split_record(value)]

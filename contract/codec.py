"""Encode and strictly decode contract messages; every rejection carries a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from contract.events import SCHEMA_VERSION, AnyEvent, Envelope
from contract.text import explain

MAX_PAYLOAD_BYTES = 64 * 1024
"""No contract message comes near this; larger payloads are rejected unread."""

TS_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2200, 1, 1, tzinfo=UTC)
"""Outside these, `ts` is garbage, not a skewed clock (the edge flags those): InfluxDB stores
nothing after 2262-04-11 (int64 ns) and converting year 1 or 9999 between zones overflows."""

E = TypeVar("E", bound=Envelope)

_encoder = msgspec.json.Encoder()
_any_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)  # type: ignore[arg-type]
_typed_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_any_mp_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)  # type: ignore[arg-type]
_typed_mp_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}


class ContractError(ValueError):
    """Input that is not a valid contract message; `str()` is the reason."""


def encode(event: Envelope) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes | str, type_: type[E] | None = None) -> E | AnyEvent:
    """Decode one message, of any type or of `type_`; raise ContractError with the reason."""
    _check_size(payload)
    decoder = _any_decoder if type_ is None else _decoder_for(type_)
    return _checked(decoder.decode, payload, "JSON")


def decode_msgpack(payload: bytes, type_: type[E] | None = None) -> E | AnyEvent:
    """One message in its MessagePack form (inside a Kafka record, contract.kafka_record): the same
    structs, constraints and checks as `decode`; `ts` may be a MessagePack timestamp."""
    _check_size(payload)
    decoder = _any_mp_decoder if type_ is None else _mp_decoder_for(type_)
    return _checked(decoder.decode, payload, "MessagePack")


def _check_size(payload: object) -> None:
    try:
        size = len(payload)  # type: ignore[arg-type]
    except TypeError:  # a Kafka tombstone (None) or another non-payload
        raise ContractError(f"payload is {type(payload).__name__}, not bytes") from None
    if size > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {size} bytes exceeds {MAX_PAYLOAD_BYTES}")


def _checked(decode_fn: Any, payload: Any, form: str) -> Any:
    try:
        event = decode_fn(payload)
    except msgspec.ValidationError as exc:
        raise ContractError(f"invalid message: {explain(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise ContractError(f"malformed {form}: {exc}") from None
    except ValueError as exc:  # raised by __post_init__ checks
        raise ContractError(f"inconsistent message: {exc}") from None
    except RecursionError:  # msgspec's depth guard, also while skipping an unknown field (issue 11)
        raise ContractError(f"malformed {form}: nested deeper than the decoder's recursion limit") from None
    except Exception as exc:  # whatever else one message can make a decoder raise is its fault
        raise ContractError(f"undecodable message: {type(exc).__name__}: {exc}") from None
    if event.schema != SCHEMA_VERSION:
        raise ContractError(f"schema version {event.schema} is not {SCHEMA_VERSION}")
    if event.ts < TS_MIN:
        raise ContractError(f"ts {event.ts.isoformat()} is before {TS_MIN:%Y-%m-%d}")
    if event.ts >= TS_MAX:
        raise ContractError(f"ts {event.ts.isoformat()} is after {TS_MAX:%Y-%m-%d}")
    return event


def _mp_decoder_for(type_: type[E]) -> msgspec.msgpack.Decoder[E]:
    decoder = _typed_mp_decoders.get(type_)
    if decoder is None:
        decoder = _typed_mp_decoders[type_] = msgspec.msgpack.Decoder(type_)
    return decoder


def _decoder_for(type_: type[E]) -> msgspec.json.Decoder[E]:
    decoder = _typed_decoders.get(type_)
    if decoder is None:
        decoder = _typed_decoders[type_] = msgspec.json.Decoder(type_)
    return decoder

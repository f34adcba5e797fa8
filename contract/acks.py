"""Pipeline confirmations: the bridge tells an edge agent which of its messages Kafka now holds.

Why: a broker's PUBACK only says the broker has a message. Mosquitto keeps messages for an
offline persistent session in memory and saves them only every `autosave_interval`, so a broker
crash (or a restart before the bridges reconnect, eclipse-mosquitto/mosquitto#769) can drop a
message the edge already deleted on PUBACK. With confirmations the edge keeps every message until
the pipeline has it in Kafka (on its event topic or, if invalid, on the dead-letter topic) and
re-sends what is not confirmed in time; the workers' msg_id de-duplication absorbs the copies.

Opt-in per message, the MQTT 5 way: the edge sets the PUBLISH's Response Topic to its
confirmation topic `ws/ack/v1/{site}` (outside `ws/v1/#`, so no bridge reads it back). The bridge
confirms only such messages (a load generator or a device without an outbox costs nothing) and
always to the topic of the site the message came from, whatever Response Topic it names (the ACL
lets a site read only its own). Payload a JSON object `{"ids": ["device:epoch:seq", ...]}`, at most
`MAX_IDS_PER_ACK` ids.
"""

from __future__ import annotations

import msgspec

from contract.msgid import parse_msg_id

ACK_PREFIX = "ws/ack/v1"
MAX_IDS_PER_ACK = 1000
"""Keeps one confirmation well under a typical broker `max_packet_size` (about 40 KiB of ids)."""


class PipelineAck(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    ids: list[str]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PipelineAck)


class AckError(ValueError):
    """A confirmation that cannot be used; `str()` is the reason."""


def ack_topic(site_id: str) -> str:
    return f"{ACK_PREFIX}/{site_id}"


def ack_subscription() -> str:
    """What the bridge may publish to (ACL) and a monitor may watch."""
    return f"{ACK_PREFIX}/+"


def encode_ack(ids: list[str]) -> bytes:
    if len(ids) > MAX_IDS_PER_ACK:
        raise ValueError(f"{len(ids)} ids in one confirmation; at most {MAX_IDS_PER_ACK}")
    return _encoder.encode(PipelineAck(ids))


def decode_ack(payload: bytes) -> list[str]:
    """The confirmed msg_ids; raise AckError when the payload is not a confirmation."""
    try:
        ack = _decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise AckError(f"not a pipeline confirmation: {exc}") from None
    except RecursionError:  # nested arrays or objects, even in a field the struct ignores
        raise AckError("not a pipeline confirmation: nested deeper than the decoder's limit") from None
    except Exception as exc:  # one bad confirmation must never stop the session's network loop
        raise AckError(f"undecodable confirmation: {type(exc).__name__}: {exc}") from None
    for msg_id in ack.ids:
        try:
            parse_msg_id(msg_id)
        except Exception:  # ValueError, or anything else the id parser raises for this id
            raise AckError(f"confirmation names {msg_id[:200]!r}, not a device:epoch:seq msg_id") from None
    return ack.ids

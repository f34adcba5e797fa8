"""JSON Schema of the contract, for device vendors who publish directly to MQTT."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from contract.events import SCHEMA_VERSION, AnyEvent
from contract.kafka_record import MAX_MESSAGES, RECORD_VERSION
from contract.topics import KIND_EVENTS, MQTT_PREFIX


def contract_schema() -> dict[str, Any]:
    """One schema document: a tagged union (`type`) of every message, definitions under $defs."""
    (root,), components = msgspec.json.schema_components([AnyEvent])
    components = _ecma_patterns(components)
    events = "; ".join(f"{kind}: {', '.join(sorted(allowed))}" for kind, allowed in KIND_EVENTS.items())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"wastestream message contract v{SCHEMA_VERSION}",
        "description": (
            f"UTF-8 JSON over MQTT 5, QoS 1, on {MQTT_PREFIX}/{{site_id}}/{{kind}}/{{device_id}}/{{event}}"
            f" where each kind publishes only its events ({events}). `msg_id` must be unique per message and"
            " identical on retries. Text fields hold no control, format or bidi character and are not blank."
        ),
        **root,
        "$defs": components,
    }


_ASTRAL = re.compile(r"\\U000([0-9a-fA-F]{5})")


def ecma_pattern(pattern: str) -> str:
    """A contract regex (Python `re`) as ECMA-262 with the `u` flag, which JSON Schema prescribes:
    `\\Z` (end of text) is `$` there, and a code point above U+FFFF is `\\u{...}`."""
    return _ASTRAL.sub(r"\\u{\1}", pattern.replace("\\Z", "$"))


def _ecma_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ecma_pattern(v) if k == "pattern" and isinstance(v, str) else _ecma_patterns(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_ecma_patterns(v) for v in node]
    return node


def contract_schema_json() -> str:
    text = json.dumps(contract_schema(), indent=2, ensure_ascii=False, sort_keys=True)
    return text


def kafka_record_schema() -> dict[str, Any]:
    """The version-2 Kafka record of the event topics (contract/kafka_record.py), decoded from
    MessagePack into the JSON data model: `{"v": 2, "m": [message, ...]}`, each message as in
    `contract_schema` (`ts` arrives as a MessagePack timestamp; read as RFC 3339 text here)."""
    contract = contract_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"wastestream Kafka record v{RECORD_VERSION} (event topics)",
        "description": (
            "The value of a record on ws.weighings, ws.deposits, ws.bin-levels, ws.truck-telemetry and "
            "ws.device-status: MessagePack (first byte a map header; a first byte '{' is a version-1 "
            "record, one contract message as UTF-8 JSON). `m` holds the messages in their order, all of "
            "the topic's event type and of the record's partition (murmur2 of `site_id/device_id`); "
            "`ts` is a MessagePack timestamp (extension -1, UTC). "
            "Reader: contract.kafka_record.read_messages."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["v", "m"],
        "properties": {
            "v": {"const": RECORD_VERSION},
            "m": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES,
                  "items": {k: v for k, v in contract.items() if k not in ("$schema", "title", "description",
                                                                          "$defs")}},
        },
        "$defs": contract["$defs"],
    }


def kafka_record_schema_json() -> str:
    return json.dumps(kafka_record_schema(), indent=2, ensure_ascii=False, sort_keys=True)

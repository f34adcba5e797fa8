"""Dead-letter records: what was rejected, why, and the original bytes, as one JSON document.

Bridge, workers, alert service and sinks all write these to DEADLETTER_TOPIC so an operator reads
one format. A record is bounded (issue 11): by default it keeps a prefix of the payload
(`PAYLOAD_PREFIX_BYTES`) with the payload's length and sha256 and a `truncated` flag, and bounds the
reason and topic texts, so even a payload of control bytes (`\\u0001` is six bytes in JSON) stays
far below Kafka's 1 MB message limit: a record Kafka refuses would be retried, never acked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

PAYLOAD_PREFIX_BYTES = 4096
"""Bytes of the payload a record keeps by default: enough to see what a device sent."""
MAX_REASON_CHARS = 1024
MAX_TOPIC_CHARS = 512
MAX_RECORD_BYTES = 64 * 1024
"""What a default record never exceeds (payload 6 x 4 KiB, reason and topic 6 bytes a character
at worst, plus the fixed fields): a sixteenth of Kafka's default `max.message.bytes`."""


def payload_text(payload: bytes) -> tuple[str, str]:
    """The payload as text when it is UTF-8, else base64; and which encoding was used."""
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def _prefix_text(prefix: bytes, truncated: bool) -> tuple[str, str]:
    """Like `payload_text`, but a UTF-8 character cut in two by the prefix is dropped, not a
    reason to fall back to base64."""
    try:
        return prefix.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.reason == "unexpected end of data" and exc.start >= len(prefix) - 3:
            return prefix[:exc.start].decode("utf-8"), "utf-8"
        return base64.b64encode(prefix).decode("ascii"), "base64"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def deadletter_record(reason: str, topic: str, payload: bytes, *,
                      max_payload_bytes: int | None = PAYLOAD_PREFIX_BYTES, **extra: Any) -> bytes:
    """Encode one dead-letter record; `received_at` is this process's UTC clock.

    `max_payload_bytes=None` keeps the whole payload, for callers whose payload is the data to
    replay and is already chunked to fit (the InfluxDB sink); `extra` fields must be small."""
    truncated = max_payload_bytes is not None and len(payload) > max_payload_bytes
    kept = payload[:max_payload_bytes] if truncated else payload
    text, encoding = _prefix_text(kept, truncated)
    record: dict[str, Any] = {
        "reason": _bounded(reason, MAX_REASON_CHARS),
        "topic": _bounded(topic, MAX_TOPIC_CHARS),
        "payload": text,
        "payload_encoding": encoding,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "truncated": truncated,
        "received_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    # backslashreplace: a lone surrogate in a reason (from a decoder's message) becomes its JSON escape
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "backslashreplace")

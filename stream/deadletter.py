"""Dead-letter records: what was rejected, why, and the original bytes, as one JSON document.

Bridge and sinks both write these to DEADLETTER_TOPIC so an operator reads one format.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any


def payload_text(payload: bytes) -> tuple[str, str]:
    """The payload as text when it is UTF-8, else base64; and which encoding was used."""
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def deadletter_record(reason: str, topic: str, payload: bytes, **extra: Any) -> bytes:
    """Encode one dead-letter record; `received_at` is this process's UTC clock."""
    text, encoding = payload_text(payload)
    record: dict[str, Any] = {
        "reason": reason,
        "topic": topic,
        "payload": text,
        "payload_encoding": encoding,
        "received_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8")

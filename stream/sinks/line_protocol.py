"""InfluxDB line protocol, written by hand: tiny, exact, and the same bytes for v1 and v2.

Deterministic output (tags sorted, explicit ns timestamp) matters: a replayed
message must produce the identical series and timestamp so it overwrites itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

FieldValue = float | int | bool | str

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": " ", "\r": " "})


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ns: int


@lru_cache(maxsize=65_536)
def _escape_key(text: str) -> str:
    """Cached: tag keys, field keys and most tag values (sites, devices) repeat on every point;
    str.translate with a dict table is the slow path, and most texts need no escape at all."""
    if "," in text or "=" in text or " " in text or "\n" in text or "\r" in text:
        text = text.translate(_KEY_ESCAPES)
    # A trailing backslash would escape our separator; line protocol cannot carry it.
    return text.rstrip("\\") if text.endswith("\\") else text


def _field_value(value: FieldValue) -> str | None:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None  # NaN/inf are not representable
    if '"' in value or "\\" in value or "\n" in value or "\r" in value:
        value = value.translate(_STRING_ESCAPES)
    return '"' + value + '"'


def to_line(point: Point) -> str:
    """One line (no newline). Empty tag values are omitted (invalid in line protocol)."""
    parts = [point.measurement.translate(_MEASUREMENT_ESCAPES)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if value:
            parts.append(f"{_escape_key(key)}={_escape_key(value)}")
    fields = []
    for key in sorted(point.fields):
        encoded = _field_value(point.fields[key])
        if encoded is not None:
            fields.append(f"{_escape_key(key)}={encoded}")
    if not fields:
        raise ValueError(f"point {point.measurement} has no representable field")
    return f"{','.join(parts)} {','.join(fields)} {point.ts_ns}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(ts: datetime) -> int:
    """Exact ns since the epoch (no float rounding). An aware difference is exact whatever the
    zone, so no `astimezone` (called several times per message)."""
    delta = (ts if ts.tzinfo is not None else ts.astimezone(UTC)) - _EPOCH  # naive: local time, as before
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def day_start_ns(ts: datetime) -> int:
    """The UTC midnight that starts `ts`'s day, in ns: the timestamp of daily aggregates."""
    day = ts.astimezone(UTC)
    return to_ns(datetime(day.year, day.month, day.day, tzinfo=UTC))

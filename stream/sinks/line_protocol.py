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
    kind = type(value)
    if kind is float:  # the common case first, by exact type (bool is an int)
        return repr(value) if math.isfinite(value) else None  # type: ignore[arg-type]  # NaN/inf: none
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if isinstance(value, int):  # a subclass (an IntEnum); bool has none
        return f"{int(value)}i"
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    if '"' in value or "\\" in value or "\n" in value or "\r" in value:
        value = value.translate(_STRING_ESCAPES)
    return '"' + value + '"'


@lru_cache(maxsize=65_536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,k=v,...` of sorted tags (empty values omitted): cached, as series repeat."""
    parts = [measurement.translate(_MEASUREMENT_ESCAPES)]
    parts.extend(f"{_escape_key(key)}={_escape_key(value)}" for key, value in tags if value)
    return ",".join(parts)


@lru_cache(maxsize=4096)
def _field_order(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, escaped key) in sorted order, cached per field set (a measurement has a few)."""
    return tuple((key, _escape_key(key)) for key in sorted(keys))


def to_line(point: Point) -> str:
    """One line (no newline). Empty tag values are omitted (invalid in line protocol)."""
    series = _series(point.measurement, tuple(sorted(point.tags.items())))
    values = point.fields
    fields = []
    for key, escaped in _field_order(tuple(values)):
        encoded = _field_value(values[key])
        if encoded is not None:
            fields.append(f"{escaped}={encoded}")
    if not fields:
        raise ValueError(f"point {point.measurement} has no representable field")
    return f"{series} {','.join(fields)} {point.ts_ns}"


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

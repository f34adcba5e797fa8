"""Local days and hours: a Chinese city's day starts at 00:00 Beijing time, not 00:00 UTC.

Daily aggregates are keyed and timestamped by the start of the local day (as UTC ns), so
InfluxQL `GROUP BY time(1d) tz('Asia/Shanghai')` puts each of them in its own bucket.
DST-safe: the local midnight is resolved through the zone, not a fixed offset.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from stream.sinks.line_protocol import to_ns


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


QUARTER_NS = 900 * 1_000_000_000
"""Every zone's offset, and every DST change, is a whole number of quarter hours, so a local
midnight is a UTC quarter-hour boundary and one UTC quarter hour lies in one local day."""


def local_day_start_ns(ts: datetime, tz: str) -> int:
    """The local midnight (in `tz`) that starts `ts`'s local day, as UTC ns (cached per quarter hour:
    a batch's messages share a few, and this is called per message by several agents)."""
    return _quarter_day_start_ns(to_ns(ts) // QUARTER_NS, tz)


@lru_cache(maxsize=4096)
def _quarter_day_start_ns(quarter: int, tz: str) -> int:
    local = datetime.fromtimestamp(quarter * (QUARTER_NS // 1_000_000_000), zone(tz))
    return to_ns(datetime(local.year, local.month, local.day, tzinfo=zone(tz)))


def local_day(ts: datetime, tz: str) -> str:
    """`ts`'s local date as YYYY-MM-DD: human-readable day ids in alert dedup keys."""
    return ts.astimezone(zone(tz)).date().isoformat()


def day_label(day_ns: int, tz: str) -> str:
    """The local date of a day-start timestamp made by `local_day_start_ns`."""
    return datetime.fromtimestamp(day_ns / 1e9, zone(tz)).date().isoformat()

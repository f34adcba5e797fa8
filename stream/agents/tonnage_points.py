"""The tonnage analysis's InfluxDB points (pure): one per ticket, one running total per day.

See stream/sinks/SCHEMA.md. Both are idempotent: series + timestamp are fixed by the
ticket, so a replay overwrites the same point instead of adding another.
"""

from __future__ import annotations

from contract.events import Weighing
from stream.sinks.line_protocol import Point, day_start_ns, to_ns

WEIGHING = "weighing"
TONNAGE_DAILY = "tonnage_daily"


def weighing_point(w: Weighing) -> Point:
    """Per-ticket point at the ticket's own timestamp; plate and ids are fields (unbounded)."""
    return Point(
        WEIGHING,
        {"site": w.site_id, "device": w.device_id, "category": w.category.value, "origin": w.origin},
        {
            "net_kg": float(w.net_kg),
            "gross_kg": float(w.gross_kg),
            "tare_kg": float(w.tare_kg),
            "plate": w.plate,
            "ticket_id": w.ticket_id,
            "msg_id": w.msg_id,
            "direction": w.direction.value,
            "stable": w.stable,
            "flags": ",".join(f.value for f in w.flags),
        },
        to_ns(w.ts),
    )


def day_key(w: Weighing) -> str:
    """Key of the running daily total this ticket adds to, within its device's state."""
    return f"{w.site_id}|{w.category.value}|{day_start_ns(w.ts)}"


def daily_point(w: Weighing, device_total_kg: float, tickets: int) -> Point:
    """The device's running total for the ticket's (site, category, UTC day); sum over devices in queries."""
    return Point(
        TONNAGE_DAILY,
        {"site": w.site_id, "category": w.category.value, "device": w.device_id},
        {"net_kg": float(device_total_kg), "tickets": tickets},
        day_start_ns(w.ts),
    )

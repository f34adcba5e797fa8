"""The tonnage analysis's InfluxDB points and records (pure).

See stream/sinks/SCHEMA.md. All points are idempotent: series + timestamp are fixed by the
ticket (or by facility and local day), so a replay overwrites the same point instead of
adding another. Days are local days of the city's timezone (stream/agents/localday.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from contract.events import Weighing
from stream.agents.localday import local_day_start_ns
from stream.sinks.line_protocol import Point, to_ns

WEIGHING = "weighing"
TONNAGE_DAILY = "tonnage_daily"
FACILITY_LOAD = "facility_load"


def weighing_point(w: Weighing) -> Point:
    """Per-ticket point at the ticket's own timestamp; plate and ids are fields (unbounded)."""
    return Point(
        WEIGHING,
        # StrEnum members ARE their value (str): `.value` is an enum property, ~1 us a call
        {"site": w.site_id, "device": w.device_id, "category": w.category, "origin": w.origin},
        {
            "net_kg": float(w.net_kg),
            "gross_kg": float(w.gross_kg),
            "tare_kg": float(w.tare_kg),
            "plate": w.plate,
            "ticket_id": w.ticket_id,
            "msg_id": w.msg_id,
            "direction": w.direction,
            "stable": w.stable,
            "flags": ",".join(f.value for f in w.flags),
        },
        to_ns(w.ts),
    )


def day_key(w: Weighing, tz: str) -> str:
    """Key of the running daily total this ticket adds to, within its device's state."""
    return f"{w.site_id}|{w.category}|{local_day_start_ns(w.ts, tz)}"


def daily_point(w: Weighing, device_total_kg: float, tickets: int, tz: str) -> Point:
    """The device's running total for the ticket's (site, category, local day); queries sum devices."""
    return Point(
        TONNAGE_DAILY,
        {"site": w.site_id, "category": w.category, "device": w.device_id},
        {"net_kg": float(device_total_kg), "tickets": tickets},
        local_day_start_ns(w.ts, tz),
    )


@dataclass(frozen=True)
class DeviceDayTotal:
    """One weighbridge's running total at one facility for one local day (all categories).

    Sent on the site-keyed internal topic after every ticket (duplicates included, to heal a
    crash between the table write and the send). Totals only grow, so the receiver keeps
    the largest per device and day: replays and reordering cannot lower or double it.
    """

    site: str
    device: str
    day_ns: int
    kg: float
    tickets: int
    msg_id: str
    """The ticket that produced this total: evidence for an over_capacity alert."""
    ts_ns: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> DeviceDayTotal:
        return cls._from(json.loads(payload))

    @classmethod
    def _from(cls, d: dict[str, Any]) -> DeviceDayTotal:
        return cls(str(d["site"]), str(d["device"]), int(d["day_ns"]), float(d["kg"]), int(d["tickets"]),
                   str(d["msg_id"]), int(d["ts_ns"]))


def encode_totals(totals: Sequence[DeviceDayTotal]) -> bytes:
    """One record for several totals: a batch forwards one per partition of the facility-keyed topic
    (stream/agents/runner.py `by_partition`), holding the latest total of each device and day."""
    return orjson.dumps([{"site": t.site, "device": t.device, "day_ns": t.day_ns, "kg": t.kg,
                          "tickets": t.tickets, "msg_id": t.msg_id, "ts_ns": t.ts_ns} for t in totals])


def decode_totals(payload: bytes) -> list[DeviceDayTotal]:
    """The totals of one record: a list (`encode_totals`) or a single total (`DeviceDayTotal.encode`)."""
    data = json.loads(payload)
    return [DeviceDayTotal._from(d) for d in data] if isinstance(data, list) else [DeviceDayTotal._from(data)]


def facility_load_point(site: str, day_ns: int, kg: float, tickets: int, devices: int,
                        capacity_t: float | None) -> Point:
    """A facility's total for a local day against its design capacity (overwritten as the day fills)."""
    fields: dict[str, float | int | bool | str] = {"net_t": kg / 1000, "tickets": tickets, "devices": devices}
    if capacity_t is not None:
        fields["capacity_t"] = float(capacity_t)
        fields["load_pct"] = 100 * kg / 1000 / capacity_t
        fields["over_capacity"] = kg / 1000 > capacity_t
    return Point(FACILITY_LOAD, {"site": site}, fields, day_ns)

"""Every message that crosses a process boundary, as msgspec structs.

Edge, bridge and stream all import these; nothing here does I/O. Decoding is
strict (unknown fields, wrong types, out-of-range values and naive timestamps
are rejected) so that bad device output is caught at the first hop with a
reason, not deep inside an aggregate.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, ClassVar

import msgspec

from contract import text

SCHEMA_VERSION = 1
"""Bumped on any incompatible change; decoders reject other versions."""

MAX_VEHICLE_KG = 200_000.0
"""No road vehicle on a weighbridge weighs more; anything above is a fault."""

Kg = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_VEHICLE_KG, description="kilograms")]
SignedKg = Annotated[float, msgspec.Meta(ge=-MAX_VEHICLE_KG, le=MAX_VEHICLE_KG)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with offset; device clock")]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=text.IDENT)]
MsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=text.MSG_ID)]
Plate = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=text.PLATE)]
Pseudonym = Annotated[str, msgspec.Meta(pattern=text.PSEUDONYM)]
Text = Annotated[str, msgspec.Meta(pattern=text.TEXT)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""InfluxDB stores integers as int64; a larger one would be written wrong or refused."""
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]


class WasteCategory(enum.StrEnum):
    """National four-way household sort plus the other streams sites weigh."""

    KITCHEN = "kitchen"  # 厨余
    RECYCLABLE = "recyclable"  # 可回收
    HAZARDOUS = "hazardous"  # 有害
    RESIDUAL = "residual"  # 其他
    CONSTRUCTION = "construction"  # 建筑垃圾
    BULKY = "bulky"
    INDUSTRIAL = "industrial"
    HAZARDOUS_INDUSTRIAL = "hazardous_industrial"


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class TareSource(enum.StrEnum):
    MEASURED = "measured"  # truck weighed empty on exit
    REGISTERED = "registered"  # tare from the vehicle registry
    NONE = "none"  # no tare known (an unread plate, a first pass never weighed out): tare = gross, net 0


class WeighingFlag(enum.StrEnum):
    """Anti-cheat and integrity flags an indicator or the edge raises on a ticket."""

    UNSTABLE_CAPTURE = "unstable_capture"
    REMOTE_JUMP = "remote_jump"
    DOUBLE_WEIGHING = "double_weighing"
    TARE_DEVIATION = "tare_deviation"
    OVER_RATING = "over_rating"
    CLOCK_SKEW = "clock_skew"
    OVERLOAD = "overload"  # the indicator reported out of range (over capacity) during the visit
    MOTION = "motion"  # the indicator kept reporting motion while the weights were at rest
    NET_MODE = "net_mode"  # the indicator was in net mode: its own tare, not the registry's
    UNREGISTERED_VEHICLE = "unregistered_vehicle"  # plate unread or not in the site's vehicle registry
    PASS_EXPIRED = "pass_expired"  # weighed in, never weighed out within the site's time: no measured tare


class Verdict(enum.StrEnum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNCHECKED = "unchecked"


class VerdictSource(enum.StrEnum):
    CAMERA = "camera"
    INSPECTOR = "inspector"
    NONE = "none"


class DeviceState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    STOPPED = "stopped"
    """Stopped on purpose (a planned shutdown, maintenance): reported by the edge, never alerted."""


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Fields every message carries. `msg_id` is stable across retries."""

    msg_id: MsgId
    device_id: Ident
    site_id: Ident
    ts: UtcTime
    schema: int = SCHEMA_VERSION

    event: ClassVar[str] = ""
    """The `{event}` segment of the MQTT topic for this message type."""


class Weighing(Envelope, frozen=True, tag="weighing"):
    """A weighbridge ticket (磅单)."""

    event: ClassVar[str] = "weighing"

    ticket_id: Ident
    plate: Plate
    direction: Direction
    gross_kg: Kg
    tare_kg: Kg
    net_kg: Kg
    category: WasteCategory
    origin: Ident
    tare_source: TareSource = TareSource.REGISTERED
    stable: bool = True
    flags: tuple[WeighingFlag, ...] = ()

    def __post_init__(self) -> None:
        if self.tare_kg > self.gross_kg:
            raise ValueError("tare_kg exceeds gross_kg")
        if abs(self.gross_kg - self.tare_kg - self.net_kg) > 0.5:
            raise ValueError("net_kg is not gross_kg - tare_kg")


class Deposit(Envelope, frozen=True, tag="deposit"):
    """One drop at a smart sorting station; `household` is a keyed hash, never raw."""

    event: ClassVar[str] = "deposit"

    community_id: Ident
    bin: WasteCategory
    kg: Annotated[float, msgspec.Meta(ge=0.0, le=500.0)]
    household: Pseudonym
    verdict: Verdict
    verdict_source: VerdictSource


class BinLevel(Envelope, frozen=True, tag="bin_level"):
    event: ClassVar[str] = "bin_level"

    community_id: Ident
    bin: WasteCategory
    fill_pct: Percent


class TruckTelemetry(Envelope, frozen=True, tag="truck_telemetry"):
    """A muck-truck terminal report: GPS fix plus the lid/bed/load I/O."""

    event: ClassVar[str] = "truck_telemetry"

    plate: Plate
    lat: Latitude
    lon: Longitude
    speed_kmh: Annotated[float, msgspec.Meta(ge=0.0, le=200.0)]
    lid_closed: bool
    bed_raised: bool
    load_kg: Kg
    ignition: bool
    heading_deg: Annotated[float, msgspec.Meta(ge=0.0, lt=360.0)] = 0.0
    gps_fix: bool = True


class DeviceStatus(Envelope, frozen=True, tag="device_status"):
    event: ClassVar[str] = "device_status"

    state: DeviceState
    outbox_depth: Count = 0
    last_error: Annotated[str, msgspec.Meta(max_length=1024, pattern=text.TEXT)] | None = None
    clock_offset_s: float | None = None


class Alert(Envelope, frozen=True, tag="alert"):
    """An alert raised by the stream; `evidence` lists the msg_ids that raised it."""

    event: ClassVar[str] = "alert"

    alert_id: MsgId
    kind: Ident
    severity: Severity
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=text.TEXT)]
    summary: Text
    evidence: tuple[MsgId, ...] = ()
    lat: Latitude | None = None
    lon: Longitude | None = None
    state: AlertState = AlertState.OPEN


DeviceEvent = Weighing | Deposit | BinLevel | TruckTelemetry | DeviceStatus
AnyEvent = Weighing | Deposit | BinLevel | TruckTelemetry | DeviceStatus | Alert

EVENT_TYPES: dict[str, type[Envelope]] = {
    cls.event: cls for cls in (Weighing, Deposit, BinLevel, TruckTelemetry, DeviceStatus, Alert)
}

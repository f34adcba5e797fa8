"""Weighbridge ticket workflow: a pure state machine, readings and plates in, tickets out.

A visit starts when the weight rises to `occupied_kg` and ends after `off_readings`
consecutive readings below it (one noisy frame does not split a visit). The gross is the
heaviest stable capture of the visit: a truck pausing half on or half off the deck is always
lighter than the truck fully on it. A visit never stable yields gross = heaviest reading,
`stable=False` and the `unstable_capture` flag. No I/O here: the transport feeds it.

What the indicator says is obeyed, not just parsed:

- **motion**: a reading the indicator marks in motion never counts towards a stable weight (a
  legal-for-trade indicator does not print in motion); the weights are judged at rest as
  well, so a motion bit held low while the load rocks does not help either. A visit whose
  weights were at rest while the indicator kept saying motion gets the `motion` flag.
- **overload** (out of range, not negative): the true gross is beyond the indicator's range,
  so the visit is never stable: `stable=False`, the `overload` flag, gross = heaviest seen.
- **net mode**: the indicator already subtracted its own tare, so the ticket carries its
  gross (net + tare), tare and net, with the `net_mode` flag; the registered tare is not
  subtracted again, only compared (`tare_deviation` beyond `tare_deviation_kg`).
- **unit**: the site pins the unit it expects (config `unit`). A reading in another unit, with
  no weight unit, or in expanded display (x10, not a legal weight) is refused: `fault` says
  why (the transport reports it in device_status), a visit under way is dropped with a
  logged reason, and nothing is rescaled. The fault clears after `FAULT_CLEAR_READINGS`
  good readings in a row, so a flapping indicator does not flood device_status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

import msgspec

from contract.events import (
    MAX_VEHICLE_KG,
    Direction,
    TareSource,
    WasteCategory,
    Weighing,
    WeighingFlag,
)
from edge.devices.base import DeviceSpec, PositiveKg, Vehicle
from edge.devices.weighbridge.frames import NO_UNIT, FrameError, WeightReading
from edge.devices.weighbridge.stability import StabilityDetector, StableCapture, round_to_division

log = logging.getLogger("edge.weighbridge")

UNREAD_PLATE = "UNREAD"
"""Plate on a ticket when the camera sent nothing for the visit."""
FAULT_CLEAR_READINGS = 10
"""Good readings in a row that end a fault (1 s at the usual 10 Hz)."""


class StableConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tolerance_kg: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    hold_s: PositiveKg = 1.0


class WeighbridgeDevice(DeviceSpec, frozen=True, tag="weighbridge"):
    """One weighbridge in the site config (schema in edge/config.py's docstring)."""

    kind: ClassVar[str] = "weighbridge"
    port: str
    anpr_port: str | None = None
    baudrate: Annotated[int, msgspec.Meta(ge=50)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    format: Literal["toledo", "xk3190"] = "toledo"
    checksum: bool = True
    unit: Literal["kg", "t", "lb"] = "kg"
    division_kg: PositiveKg = 20.0
    occupied_kg: PositiveKg = 500.0
    stable: StableConfig = msgspec.field(default_factory=StableConfig)
    double_weigh_window_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    tare_deviation_kg: Annotated[float, msgspec.Meta(ge=0)] = 500.0


class State(StrEnum):
    IDLE = "idle"
    OCCUPIED = "occupied"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A finished weighing, before the outbox gives it a msg_id."""

    plate: str
    gross_kg: float
    tare_kg: float
    net_kg: float
    category: WasteCategory
    origin: str
    stable: bool
    flags: tuple[WeighingFlag, ...]
    ts: datetime
    at: float
    direction: Direction = Direction.INBOUND
    tare_source: TareSource = TareSource.REGISTERED

    def to_weighing(self, *, msg_id: str, ticket_id: str, device_id: str, site_id: str) -> Weighing:
        return Weighing(
            msg_id=msg_id,
            device_id=device_id,
            site_id=site_id,
            ts=self.ts,
            ticket_id=ticket_id,
            plate=self.plate,
            direction=self.direction,
            gross_kg=self.gross_kg,
            tare_kg=self.tare_kg,
            net_kg=self.net_kg,
            category=self.category,
            origin=self.origin,
            tare_source=self.tare_source,
            stable=self.stable,
            flags=self.flags,
        )


@dataclass
class _Visit:
    started: float
    plate: str | None = None
    max_kg: float = 0.0
    max_reading: WeightReading | None = None
    best: StableCapture | None = None
    best_reading: WeightReading | None = None
    below: int = 0
    motion_bits: int = 0
    overloads: int = 0
    at_rest_in_motion: bool = False
    """The weights were at rest while the indicator said motion: a weight it did not confirm."""
    extra_plates: list[str] = field(default_factory=list)


class WeighbridgeWorkflow:
    """Turns a weighbridge's reading stream and plate reads into tickets."""

    def __init__(
        self,
        device: WeighbridgeDevice,
        registry: Mapping[str, Vehicle],
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        plate_max_age_s: float = 120.0,
        off_readings: int = 3,
    ) -> None:
        self.device = device
        self.registry = registry
        self._wall_clock = wall_clock
        self._plate_max_age_s = plate_max_age_s
        self._off_readings = off_readings
        self._stability = StabilityDetector(
            device.stable.tolerance_kg, device.stable.hold_s, device.division_kg
        )
        self._at_rest = StabilityDetector(  # weights only, to tell "the indicator said motion"
            device.stable.tolerance_kg, device.stable.hold_s, device.division_kg
        )
        self._visit: _Visit | None = None
        self._pending_plate: tuple[float, str] | None = None
        self._last_ticket: dict[str, float] = {}
        self.frame_errors = 0
        self.frame_error_reasons: dict[str, int] = {}
        self.tickets = 0
        self.fault: str | None = None
        """Why the indicator's readings are refused now (a unit mismatch...); None while usable."""
        self.refused = 0
        self._good_since_fault = 0

    @property
    def state(self) -> State:
        return State.IDLE if self._visit is None else State.OCCUPIED

    def on_frame_error(self, error: FrameError) -> None:
        """Count and log a bad frame; it never reaches the weighing logic."""
        self.frame_errors += 1
        key = error.reason.split(":")[0]
        self.frame_error_reasons[key] = self.frame_error_reasons.get(key, 0) + 1
        log.warning("%s: frame error: %s raw=%r", self.device.id, error.reason, error.raw)

    def on_plate(self, t: float, plate: str) -> None:
        visit = self._visit
        if visit is not None and visit.plate is None:
            visit.plate = plate
        elif visit is not None and visit.plate != plate:
            log.info(
                "%s: plate %s read while %s is on the deck; kept for the next visit",
                self.device.id,
                plate,
                visit.plate,
            )
            self._pending_plate = (t, plate)
        elif visit is None:
            self._pending_plate = (t, plate)

    def on_reading(self, t: float, reading: WeightReading) -> Ticket | None:
        """Feed one reading (t = monotonic receive time); returns a ticket when a truck drives off."""
        if self._refuse(reading):
            return None
        w = reading.gross_kg
        occupied = reading.overload or w >= self.device.occupied_kg
        visit = self._visit
        if visit is None:
            if not occupied:
                return None
            visit = self._visit = _Visit(started=t)
            self._reset_detectors()
            if self._pending_plate is not None:
                pt, plate = self._pending_plate
                if t - pt <= self._plate_max_age_s:
                    visit.plate = plate
                self._pending_plate = None
        if occupied:
            visit.below = 0
            if visit.max_reading is None or w > visit.max_kg:
                visit.max_kg, visit.max_reading = w, reading
            self._capture(visit, t, w, reading)
            return None
        visit.below += 1
        if visit.below < self._off_readings:
            return None
        self._visit = None
        self._reset_detectors()
        return self._ticket(visit, t)

    def _capture(self, visit: _Visit, t: float, w: float, reading: WeightReading) -> None:
        """Feed the stability detectors; only readings the indicator does not contradict count."""
        if reading.overload:
            visit.overloads += 1
            self._reset_detectors()
            return
        at_rest = self._at_rest.feed(t, w)
        if reading.motion:
            visit.motion_bits += 1
            visit.at_rest_in_motion |= at_rest is not None
            self._stability.reset()
            return
        cap = self._stability.feed(t, w, reading.motion)
        if cap is not None and (visit.best is None or cap.weight_kg > visit.best.weight_kg):
            visit.best, visit.best_reading = cap, reading

    def _reset_detectors(self) -> None:
        self._stability.reset()
        self._at_rest.reset()

    def reading_fault(self, reading: WeightReading) -> str | None:
        """Why a reading cannot make a ticket at this site (its unit), or None."""
        expected = self.device.unit
        if reading.unit == NO_UNIT:
            return f"indicator reports no weight unit (status word C), site expects {expected}"
        if reading.unit != expected:
            return f"indicator reports {reading.unit}, site expects {expected} (config unit): not rescaled"
        if reading.expanded:
            return "indicator in expanded display (x10, status word C bit 4): not a legal weight"
        return None

    def _refuse(self, reading: WeightReading) -> bool:
        """Track `fault`; True when this reading is refused (faulty, or the fault not yet cleared)."""
        fault = self.reading_fault(reading)
        if fault is None and self.fault is not None:
            self._good_since_fault += 1
            if self._good_since_fault >= FAULT_CLEAR_READINGS:
                log.warning("%s: indicator readings usable again (was: %s)", self.device.id, self.fault)
                self.fault = None
        elif fault is not None:
            self._good_since_fault = 0
            if fault != self.fault:
                log.warning("%s: readings refused: %s", self.device.id, fault)
                self.fault = fault
            if self._visit is not None:
                log.warning(
                    "%s: visit of %s since %.1f s dropped, no ticket: %s",
                    self.device.id,
                    self._visit.plate or UNREAD_PLATE,
                    self._visit.started,
                    fault,
                )
                self._visit = None
                self._reset_detectors()
        if self.fault is None:
            return False
        self.refused += 1
        return True

    def _ticket(self, visit: _Visit, t: float) -> Ticket:
        dev = self.device
        flags: list[WeighingFlag] = []
        plate = visit.plate or UNREAD_PLATE
        if visit.plate is None:
            log.warning("%s: no plate read for the visit at %.1f s", dev.id, visit.started)
        if visit.overloads:
            gross, stable, source = round_to_division(visit.max_kg, dev.division_kg), False, visit.max_reading
            flags.append(WeighingFlag.OVERLOAD)
            log.warning(
                "%s: %s: the indicator reported overload (%d readings); gross = max seen %.0f kg",
                dev.id, plate, visit.overloads, gross,
            )
        elif visit.best is not None:
            gross, stable, source = visit.best.weight_kg, True, visit.best_reading
        else:
            gross, stable = round_to_division(visit.max_kg, dev.division_kg), False
            source = visit.max_reading
            flags.append(WeighingFlag.UNSTABLE_CAPTURE)
            if visit.at_rest_in_motion:
                flags.append(WeighingFlag.MOTION)
            log.warning("%s: %s left without a stable weight; gross = max seen %.0f kg", dev.id, plate, gross)
        gross = min(max(gross, 0.0), MAX_VEHICLE_KG)
        vehicle = self.registry.get(plate)
        indicator_tare = source.tare_kg if source is not None and source.net else None
        tare_source = TareSource.REGISTERED
        if vehicle is None:
            log.warning(
                "%s: plate %s is not in the vehicle registry: residual/unknown, tare %s",
                dev.id, plate, "0" if indicator_tare is None else "the indicator's",
            )
            tare, category, origin = 0.0, WasteCategory.RESIDUAL, "unknown"
        else:
            tare, category, origin = vehicle.tare_kg, vehicle.category, vehicle.origin
            if gross > vehicle.rated_gross_kg:
                flags.append(WeighingFlag.OVER_RATING)
        if indicator_tare is not None:  # net mode: the indicator's tare, never subtracted twice
            tare, tare_source = indicator_tare, TareSource.MEASURED
            flags.append(WeighingFlag.NET_MODE)
        if self.tare_deviates(vehicle, measured_tare_kg=indicator_tare) or tare > gross:
            flags.append(WeighingFlag.TARE_DEVIATION)
            tare = min(tare, gross)  # a gross below the tare: net 0, flagged, not negative
        last = self._last_ticket.get(plate)
        if plate != UNREAD_PLATE and last is not None and t - last <= dev.double_weigh_window_s:
            flags.append(WeighingFlag.DOUBLE_WEIGHING)
        if plate != UNREAD_PLATE:
            self._last_ticket[plate] = t
        self.tickets += 1
        return Ticket(
            plate=plate,
            gross_kg=gross,
            tare_kg=tare,
            net_kg=round(gross - tare, 6),
            category=category,
            origin=origin,
            stable=stable,
            flags=tuple(flags),
            ts=self._wall_clock(),
            at=t,
            tare_source=tare_source,
        )

    def tare_deviates(self, vehicle: Vehicle | None, measured_tare_kg: float | None) -> bool:
        """Hook: a measured tare (outbound weighing) far from the registered one.

        A ticket weighed in the indicator's net mode passes the indicator's tare here; an
        outbound weighing will pass the measured tare.
        """
        if vehicle is None or measured_tare_kg is None:
            return False
        return abs(measured_tare_kg - vehicle.tare_kg) > self.device.tare_deviation_kg

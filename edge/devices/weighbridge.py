"""Weighbridge ticket workflow: a pure state machine, readings and plates in, tickets out.

A visit starts when the weight rises to `occupied_kg` and ends after `off_readings`
consecutive readings below it (one noisy frame does not split a visit). The gross is the
heaviest stable capture of the visit: a truck pausing half on or half off the deck is always
lighter than the truck fully on it. A visit never stable yields gross = heaviest reading,
`stable=False` and the `unstable_capture` flag. No I/O here: the transport feeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from contract.events import (
    MAX_VEHICLE_KG,
    Direction,
    TareSource,
    WasteCategory,
    Weighing,
    WeighingFlag,
)
from edge.config import Vehicle, WeighbridgeDevice
from edge.devices.stability import StabilityDetector, StableCapture, round_to_division
from edge.devices.weighbridge_frames import FrameError, WeightReading

log = logging.getLogger("edge.weighbridge")

UNREAD_PLATE = "UNREAD"
"""Plate on a ticket when the camera sent nothing for the visit."""


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
    best: StableCapture | None = None
    below: int = 0
    motion_bits: int = 0
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
        self._visit: _Visit | None = None
        self._pending_plate: tuple[float, str] | None = None
        self._last_ticket: dict[str, float] = {}
        self.frame_errors = 0
        self.frame_error_reasons: dict[str, int] = {}
        self.tickets = 0

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
        w = reading.weight_kg
        occupied = w >= self.device.occupied_kg
        visit = self._visit
        if visit is None:
            if not occupied:
                return None
            visit = self._visit = _Visit(started=t)
            self._stability.reset()
            if self._pending_plate is not None:
                pt, plate = self._pending_plate
                if t - pt <= self._plate_max_age_s:
                    visit.plate = plate
                self._pending_plate = None
        if occupied:
            visit.below = 0
            visit.max_kg = max(visit.max_kg, w)
            visit.motion_bits += bool(reading.motion)
            cap = self._stability.feed(t, w, reading.motion)
            if cap is not None and (visit.best is None or cap.weight_kg > visit.best.weight_kg):
                visit.best = cap
            return None
        visit.below += 1
        if visit.below < self._off_readings:
            return None
        self._visit = None
        self._stability.reset()
        return self._ticket(visit, t)

    def _ticket(self, visit: _Visit, t: float) -> Ticket:
        dev = self.device
        flags: list[WeighingFlag] = []
        plate = visit.plate or UNREAD_PLATE
        if visit.plate is None:
            log.warning("%s: no plate read for the visit at %.1f s", dev.id, visit.started)
        if visit.best is not None:
            gross, stable = visit.best.weight_kg, True
        else:
            gross, stable = round_to_division(visit.max_kg, dev.division_kg), False
            flags.append(WeighingFlag.UNSTABLE_CAPTURE)
            log.warning("%s: %s left without a stable weight; gross = max seen %.0f kg", dev.id, plate, gross)
        gross = min(max(gross, 0.0), MAX_VEHICLE_KG)
        vehicle = self.registry.get(plate)
        if vehicle is None:
            log.warning(
                "%s: plate %s is not in the vehicle registry: residual/unknown, tare 0", dev.id, plate
            )
            tare, category, origin = 0.0, WasteCategory.RESIDUAL, "unknown"
        else:
            tare, category, origin = vehicle.tare_kg, vehicle.category, vehicle.origin
            if gross > vehicle.rated_gross_kg:
                flags.append(WeighingFlag.OVER_RATING)
        if self.tare_deviates(vehicle, measured_tare_kg=None) or tare > gross:
            flags.append(WeighingFlag.TARE_DEVIATION)
            tare = min(tare, gross)  # a gross below the registered tare: net 0, flagged, not negative
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
        )

    def tare_deviates(self, vehicle: Vehicle | None, measured_tare_kg: float | None) -> bool:
        """Hook: a measured tare (outbound weighing) far from the registered one.

        Inbound tickets use the registered tare, so there is nothing to compare yet; an
        outbound weighing will pass the measured tare here.
        """
        if vehicle is None or measured_tare_kg is None:
            return False
        return abs(measured_tare_kg - vehicle.tare_kg) > self.device.tare_deviation_kg

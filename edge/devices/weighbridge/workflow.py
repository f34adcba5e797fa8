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

The plate is matched by time: of the reads within `plate_window_s` before the visit's weight
settled (the camera's frame time when it sends one), the latest; later reads are the next truck's.

**Two-pass weighing** (`two_pass`): a truck with no registered tare, an unregistered plate (and,
with `always`, every truck) is weighed in and out. The first pass makes no ticket: its gross is
kept in `pending` (the port persists it with the outbox, so it survives a restart); the second
pass of the same plate makes the ticket: gross = the heavier pass, tare = the lighter one
(`tare_source` measured, direction `in` when the truck came in loaded, `out` when it left
loaded), flags of both passes, and `tare_deviation` when a registered tare exists and the
measured one is more than `tare_deviation_kg` from it. A first pass not weighed out within
`pass_expiry_s` becomes a ticket flagged `pass_expired`: with the registered tare if there is
one, else tare = gross (net 0, `tare_source` none): a truck's own steel is never counted as waste.

**Unregistered or unread plates** are flagged `unregistered_vehicle` (an alert, so an officer
registers the truck or corrects the read). A read but unregistered plate is weighed in and out,
so its net is measured; it is filed as residual from origin `unknown` (the contract's catch-all
category) with the flag saying the category is a guess. An unread plate cannot be paired with a
second pass: its ticket has tare = gross (net 0, `tare_source` none): the weight is on record,
nothing is counted until the officer resolves it. Never the old silent "tare 0, residual".

**Remote-control cheating** (`remote_jump`): a step between two settled weights while the truck
stands on the deck (stability.StepDetector, `remote_jump_kg` / `remote_jump_within_s`) flags the
visit; the ticket keeps the heaviest settled weight, the flag makes it an alert.
"""

from __future__ import annotations

import logging
from collections import deque
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
from edge.devices.weighbridge.frames import NO_UNIT, FrameError, FrameFormat, FrameSpec, WeightReading
from edge.devices.weighbridge.stability import (
    Jump,
    StabilityDetector,
    StableCapture,
    StepDetector,
    round_to_division,
)

log = logging.getLogger("edge.weighbridge")

UNREAD_PLATE = "UNREAD"
"""Plate on a ticket when the camera sent nothing for the visit."""
FAULT_CLEAR_READINGS = 10
"""Good readings in a row that end a fault (1 s at the usual 10 Hz)."""
MAX_PLATE_READS = 64
"""Plate reads kept for matching (a camera re-sending one truck many times stays bounded)."""
MAX_PENDING = 256
"""First passes kept at most: the oldest beyond it expire at once (bounded state, one JSON row)."""


class StableConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tolerance_kg: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    hold_s: PositiveKg = 1.0


class AnprHttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The HTTP server plate cameras push to (edge/devices/weighbridge/anpr_http.py)."""

    host: str = "0.0.0.0"  # the cameras are on the site LAN
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    path: Annotated[str, msgspec.Meta(pattern="^/[!-~]*$")] = "/"
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024


class WeighbridgeDevice(DeviceSpec, frozen=True, tag="weighbridge"):
    """One weighbridge in the site config (schema in edge/config.py's docstring)."""

    kind: ClassVar[str] = "weighbridge"
    port: str
    anpr_port: str | None = None
    anpr_http: AnprHttpConfig | None = None
    baudrate: Annotated[int, msgspec.Meta(ge=50)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    format: FrameFormat = "toledo"
    frame: FrameSpec | None = None
    """The frame layout of `format: custom` (frames.FrameSpec)."""
    checksum: bool = True
    unit: Literal["kg", "t", "lb"] = "kg"
    division_kg: PositiveKg = 20.0
    occupied_kg: PositiveKg = 500.0
    stable: StableConfig = msgspec.field(default_factory=StableConfig)
    double_weigh_window_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    tare_deviation_kg: Annotated[float, msgspec.Meta(ge=0)] = 500.0
    plate_window_s: PositiveKg = 120.0
    two_pass: Literal["unregistered", "always", "never"] = "unregistered"
    pass_expiry_s: PositiveKg = 4 * 3600.0
    remote_jump_kg: PositiveKg = 200.0
    remote_jump_within_s: PositiveKg = 0.5

    def __post_init__(self) -> None:
        if (self.format == "custom") != (self.frame is not None):
            raise ValueError("`frame` (the layout) is given with `format: custom` and only then")


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


class FirstPass(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A truck weighed in, waiting for its second pass (persisted as JSON with the outbox)."""

    plate: str
    weight_kg: float
    stable: bool
    flags: tuple[WeighingFlag, ...]
    ts: datetime


@dataclass
class _Visit:
    started: float
    max_kg: float = 0.0
    max_at: float = 0.0
    max_reading: WeightReading | None = None
    best: StableCapture | None = None
    best_reading: WeightReading | None = None
    below: int = 0
    motion_bits: int = 0
    overloads: int = 0
    at_rest_in_motion: bool = False
    """The weights were at rest while the indicator said motion: a weight it did not confirm."""
    jumps: list[Jump] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Pass:
    """What one visit measured, before the registry and the pending passes are consulted."""

    plate: str | None
    gross_kg: float
    stable: bool
    flags: tuple[WeighingFlag, ...]
    indicator_tare_kg: float | None
    at: float


class WeighbridgeWorkflow:
    """Turns a weighbridge's reading stream and plate reads into tickets."""

    def __init__(
        self,
        device: WeighbridgeDevice,
        registry: Mapping[str, Vehicle],
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        plate_max_age_s: float | None = None,
        off_readings: int = 3,
    ) -> None:
        self.device = device
        self.registry = registry
        self._wall_clock = wall_clock
        self._plate_window_s = device.plate_window_s if plate_max_age_s is None else plate_max_age_s
        self._off_readings = off_readings
        tol, hold, div = device.stable.tolerance_kg, device.stable.hold_s, device.division_kg
        self._stability = StabilityDetector(tol, hold, div)
        self._at_rest = StabilityDetector(tol, hold, div)  # weights only, to tell "the indicator said motion"
        self._steps = StepDetector(device.remote_jump_kg, device.remote_jump_within_s, tol, hold, div)
        self._visit: _Visit | None = None
        self._plates: deque[tuple[float, str]] = deque(maxlen=MAX_PLATE_READS)
        self._last_ticket: dict[str, float] = {}
        self.pending: dict[str, FirstPass] = {}
        """First passes waiting for their second, by plate."""
        self.pending_changed = False
        """`pending` changed since the port last persisted it (`pending_json`)."""
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
        """A plate read at monotonic time `t` (the camera's frame time when known, else receipt)."""
        self._plates.append((t, plate))

    # --- persistence of first passes -------------------------------------------------------

    def pending_json(self) -> str:
        self.pending_changed = False
        return msgspec.json.encode(sorted(self.pending.values(), key=lambda p: p.ts)).decode()

    def load_pending(self, raw: str | None) -> None:
        """First passes stored before a restart; unreadable state is logged, never fatal."""
        if not raw:
            return
        try:
            passes = msgspec.json.decode(raw, type=list[FirstPass])
        except msgspec.DecodeError as exc:
            log.error("%s: stored first passes unreadable, dropped: %s", self.device.id, exc)
            return
        self.pending = {p.plate: p for p in passes}
        if passes:
            log.info("%s: %d first passes waiting for their second: %s", self.device.id, len(passes),
                     ", ".join(p.plate for p in passes))

    # --- readings ----------------------------------------------------------------------------

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
        if occupied:
            visit.below = 0
            if visit.max_reading is None or w > visit.max_kg:
                visit.max_kg, visit.max_at, visit.max_reading = w, t, reading
            self._capture(visit, t, w, reading)
            return None
        visit.below += 1
        if visit.below < self._off_readings:
            return None
        self._visit = None
        self._reset_detectors()
        return self._finish(self._measure(visit, t))

    def _capture(self, visit: _Visit, t: float, w: float, reading: WeightReading) -> None:
        """Feed the stability detectors; only readings the indicator does not contradict count."""
        if reading.overload:
            visit.overloads += 1
            self._reset_detectors()
            return
        jump = self._steps.feed(t, w, reading.motion)
        if jump is not None:
            visit.jumps.append(jump)
            log.warning("%s: weight stepped %+.0f kg (%.0f -> %.0f) in %.2f s while the truck stood still:"
                        " remote_jump", self.device.id, jump.step_kg, jump.from_kg, jump.to_kg,
                        jump.settled_at - jump.left_at)
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
        self._steps.reset()

    def reading_fault(self, reading: WeightReading) -> str | None:
        """Why a reading cannot make a ticket at this site (its unit), or None."""
        expected = self.device.unit
        if reading.unit == NO_UNIT:
            return f"indicator reports no weight unit (status word C), site expects {expected}"
        if reading.unit != expected:
            return f"indicator reports {reading.unit}, site expects {expected} (config unit): not rescaled"
        if reading.expanded:
            return "indicator in expanded display (x10, status word C bit 4): not a legal weight"
        if reading.net and reading.tare_kg is None:
            return "indicator sends net weights without their tare: set it to gross"
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
                    "%s: visit since %.1f s dropped, no ticket: %s", self.device.id, self._visit.started,
                    fault)
                self._visit = None
                self._reset_detectors()
        if self.fault is None:
            return False
        self.refused += 1
        return True

    # --- a visit's measurement --------------------------------------------------------------

    def _take_plate(self, settled_at: float) -> str | None:
        """The latest read within the window before the weight settled; older reads are dropped,
        later ones kept for the next truck."""
        window = [(t, p) for t, p in self._plates if settled_at - self._plate_window_s <= t <= settled_at]
        later = [(t, p) for t, p in self._plates if t > settled_at]
        self._plates = deque(later, maxlen=MAX_PLATE_READS)
        if not window:
            return None
        plate = window[-1][1]
        others = sorted({p for _, p in window} - {plate})
        if others:
            log.info("%s: plate %s taken (nearest the stable weight); also read: %s",
                     self.device.id, plate, ", ".join(others))
        return plate

    def _measure(self, visit: _Visit, t: float) -> _Pass:
        dev = self.device
        flags: list[WeighingFlag] = []
        settled_at = visit.best.at if visit.best is not None else visit.max_at
        plate = self._take_plate(settled_at)
        label = plate or UNREAD_PLATE
        if visit.overloads:
            gross, stable, source = round_to_division(visit.max_kg, dev.division_kg), False, visit.max_reading
            flags.append(WeighingFlag.OVERLOAD)
            log.warning(
                "%s: %s: the indicator reported overload (%d readings); gross = max seen %.0f kg",
                dev.id, label, visit.overloads, gross,
            )
        elif visit.best is not None:
            gross, stable, source = visit.best.weight_kg, True, visit.best_reading
        else:
            gross, stable = round_to_division(visit.max_kg, dev.division_kg), False
            source = visit.max_reading
            flags.append(WeighingFlag.UNSTABLE_CAPTURE)
            if visit.at_rest_in_motion:
                flags.append(WeighingFlag.MOTION)
            log.warning("%s: %s left without a stable weight; gross = max seen %.0f kg", dev.id, label, gross)
        if visit.jumps:
            flags.append(WeighingFlag.REMOTE_JUMP)
        indicator_tare = source.tare_kg if source is not None and source.net else None
        return _Pass(plate, min(max(gross, 0.0), MAX_VEHICLE_KG), stable, tuple(flags), indicator_tare, t)

    def _needs_two_passes(self, p: _Pass, vehicle: Vehicle | None) -> bool:
        if p.plate is None or p.indicator_tare_kg is not None or self.device.two_pass == "never":
            return False  # unread: nothing to pair; net mode: the indicator's tare is measured
        return self.device.two_pass == "always" or vehicle is None or vehicle.tare_kg is None

    def _finish(self, p: _Pass) -> Ticket | None:
        """A ticket, or None when this was a first pass (kept in `pending`)."""
        vehicle = self.registry.get(p.plate) if p.plate is not None else None
        if not self._needs_two_passes(p, vehicle):
            return self._single(p, vehicle)
        assert p.plate is not None
        first = self.pending.pop(p.plate, None)
        expired = None
        if first is not None and self._expired(first, self._wall_clock()):
            expired, first = self._expired_ticket(first, p.at), None  # and this pass starts a new pair
        self.pending_changed = True
        if first is None:
            self.pending[p.plate] = FirstPass(p.plate, p.gross_kg, p.stable, p.flags, self._wall_clock())
            log.info("%s: %s weighed in at %.0f kg (first pass), ticket at its second pass",
                     self.device.id, p.plate, p.gross_kg)
            return expired
        return self._paired(first, p, vehicle)

    def _paired(self, first: FirstPass, p: _Pass, vehicle: Vehicle | None) -> Ticket:
        dev = self.device
        gross, tare = max(first.weight_kg, p.gross_kg), min(first.weight_kg, p.gross_kg)
        flags = list(dict.fromkeys((*first.flags, *p.flags)))
        self._over_rating(flags, vehicle, gross)
        if vehicle is None:
            flags.append(WeighingFlag.UNREGISTERED_VEHICLE)
            log.warning("%s: plate %s is not in the vehicle registry: weighed in and out, filed as"
                        " residual/unknown, flagged", dev.id, p.plate)
        elif self.tare_deviates(vehicle, measured_tare_kg=tare):
            flags.append(WeighingFlag.TARE_DEVIATION)
        direction = Direction.INBOUND if first.weight_kg >= p.gross_kg else Direction.OUTBOUND
        return self._make(p, gross, tare, vehicle, flags, TareSource.MEASURED, first.stable and p.stable,
                          direction)

    def _single(self, p: _Pass, vehicle: Vehicle | None) -> Ticket:
        dev = self.device
        flags = list(p.flags)
        gross = p.gross_kg
        if p.indicator_tare_kg is not None:  # net mode: the indicator's tare, never subtracted twice
            tare, source = p.indicator_tare_kg, TareSource.MEASURED
            flags.append(WeighingFlag.NET_MODE)
        elif vehicle is not None and vehicle.tare_kg is not None:
            tare, source = vehicle.tare_kg, TareSource.REGISTERED
        else:
            tare, source = gross, TareSource.NONE
        self._over_rating(flags, vehicle, gross)
        if vehicle is None:
            flags.append(WeighingFlag.UNREGISTERED_VEHICLE)
            log.warning("%s: %s: %s: no tare known, net %s, flagged", dev.id, p.plate or UNREAD_PLATE,
                        "no plate read for the visit" if p.plate is None else "not in the vehicle registry",
                        "0" if source is TareSource.NONE else "from the indicator's tare")
        if self.tare_deviates(vehicle, measured_tare_kg=p.indicator_tare_kg) or tare > gross:
            flags.append(WeighingFlag.TARE_DEVIATION)
        return self._make(p, gross, min(tare, gross), vehicle, flags, source, p.stable, Direction.INBOUND)

    @staticmethod
    def _over_rating(flags: list[WeighingFlag], vehicle: Vehicle | None, gross: float) -> None:
        if vehicle is not None and gross > vehicle.rated_gross_kg:
            flags.append(WeighingFlag.OVER_RATING)

    def _make(self, p: _Pass, gross: float, tare: float, vehicle: Vehicle | None, flags: list[WeighingFlag],
              source: TareSource, stable: bool, direction: Direction) -> Ticket:
        plate = p.plate or UNREAD_PLATE
        if vehicle is not None:
            category, origin = vehicle.category, vehicle.origin
        else:
            category, origin = WasteCategory.RESIDUAL, "unknown"
        last = self._last_ticket.get(plate)
        if p.plate is not None and last is not None and p.at - last <= self.device.double_weigh_window_s:
            flags.append(WeighingFlag.DOUBLE_WEIGHING)
        if p.plate is not None:
            self._last_ticket[plate] = p.at
        self.tickets += 1
        return Ticket(
            plate=plate, gross_kg=gross, tare_kg=tare, net_kg=round(gross - tare, 6), category=category,
            origin=origin, stable=stable, flags=tuple(dict.fromkeys(flags)), ts=self._wall_clock(), at=p.at,
            direction=direction, tare_source=source,
        )

    # --- first passes that never came back ---------------------------------------------------

    def _expired(self, first: FirstPass, now: datetime) -> bool:
        return (now - first.ts).total_seconds() > self.device.pass_expiry_s

    def expire(self, t: float) -> list[Ticket]:
        """Tickets for first passes older than `pass_expiry_s`, and for the oldest beyond
        `MAX_PENDING` (a camera misreading plate after plate), flagged `pass_expired`."""
        now = self._wall_clock()
        out = []
        excess = len(self.pending) - MAX_PENDING
        for plate, first in sorted(self.pending.items(), key=lambda kv: kv[1].ts):
            excess -= 1
            if excess >= 0 or self._expired(first, now):
                del self.pending[plate]
                self.pending_changed = True
                out.append(self._expired_ticket(first, t))
        return out

    def _expired_ticket(self, first: FirstPass, t: float) -> Ticket:
        vehicle = self.registry.get(first.plate)
        registered = vehicle.tare_kg if vehicle is not None else None
        flags = [*first.flags, WeighingFlag.PASS_EXPIRED]
        self._over_rating(flags, vehicle, first.weight_kg)
        if vehicle is None:
            flags.append(WeighingFlag.UNREGISTERED_VEHICLE)
        tare, source = (first.weight_kg, TareSource.NONE) if registered is None else (
            registered, TareSource.REGISTERED)
        if tare > first.weight_kg:
            flags.append(WeighingFlag.TARE_DEVIATION)
        log.warning("%s: %s weighed in at %s, not weighed out within %.0f s: ticket with %s, pass_expired",
                    self.device.id, first.plate, first.ts.isoformat(), self.device.pass_expiry_s,
                    "no tare (net 0)" if registered is None else "the registered tare")
        p = _Pass(first.plate, first.weight_kg, first.stable, (), None, t)
        return self._make(p, first.weight_kg, min(tare, first.weight_kg), vehicle, flags, source,
                          first.stable, Direction.INBOUND)

    def tare_deviates(self, vehicle: Vehicle | None, measured_tare_kg: float | None) -> bool:
        """A measured tare (the lighter pass of two, or the indicator's own in net mode) far from
        the registered one; False when either is unknown."""
        if vehicle is None or vehicle.tare_kg is None or measured_tare_kg is None:
            return False
        return abs(measured_tare_kg - vehicle.tare_kg) > self.device.tare_deviation_kg

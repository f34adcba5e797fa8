"""Muck-truck (渣土车) simulator: NMEA on a pty and a Modbus I/O module, with incidents.

One simulated second is one tick: the truck moves `speed_kmh` along its route, an RMC and a GGA
sentence go out on the pty and the I/O module's tables are updated, laid out by its vendor profile
(`io_profile`, see `edge.devices.truck.io_module`), served over Modbus TCP or RTU on a pty. With
`time_scale` N a tick lasts 1/N real seconds, so a test drives a whole trip in seconds while
positions, speeds and the GPS clock stay those of a 1 Hz receiver.

A trip: loaded and lid closed at the origin (route[0]), drive to the disposal site (the last
route point, inside the site's polygon), stop, raise the bed, the load drops to a residual,
lower the bed, drive back empty; later trips start with loading at the origin.

Incidents (`Incident`): `dump_outside` stops at `at_fraction` of the first outbound leg and
tips `drop_fraction` of the load there; the others apply during ``[at_s, at_s + duration_s)``
of simulated time: `uncovered` (lid open), `bad_checksum` (every RMC corrupted), `torn_sentence`
(every RMC cut short with no line end), `gps_loss` (void RMC and GGA).

Everything is written to a `TruckLedger`: one `LedgerPoint` per tick (the truth) and one
`LedgerEntry` per dump or incident, with time, place and how many sentences it touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import tty
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec
from pymodbus.simulator import SimDevice

from edge.devices.profiles import DEFAULT
from edge.devices.truck.io_module import IoMap, io_map
from firmware_sim import nmea_encode
from firmware_sim.modbus_profile import ProfileImage, serve
from firmware_sim.scenario import TruckSpec

IncidentKind = Literal["dump_outside", "uncovered", "bad_checksum", "torn_sentence", "gps_loss"]
Phase = Literal["loaded", "loading", "outbound", "dumping", "inbound", "parked"]

EARTH_M = 6_371_000.0
STOP_S = 3  # standing still before raising and after lowering the bed
DUMP_S = 10  # bed up while the load slides out
LOADING_S = 12


class Incident(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: IncidentKind
    at_s: float = 30.0
    """Start, in simulated seconds from the start of the run (all kinds but dump_outside)."""
    duration_s: float = 20.0
    at_fraction: float = 0.5
    """dump_outside: where along the first outbound leg, as a fraction of its length."""
    drop_fraction: float = 1.0
    """dump_outside: share of the load tipped there."""


class LedgerPoint(msgspec.Struct, frozen=True):
    """The truth at one tick (what the truck did, whatever the sentences said)."""

    t_s: int
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float
    heading_deg: float
    phase: Phase
    lid_closed: bool
    bed_raised: bool
    load_kg: float
    ignition: bool
    gps_valid: bool


class LedgerEntry(msgspec.Struct, kw_only=True):
    """A dump (`kind` "dump", at the disposal site) or an incident: when, where, how many sentences."""

    kind: Literal["dump"] | IncidentKind
    start_s: int
    start_ts: datetime
    lat: float
    lon: float
    end_s: int | None = None
    end_ts: datetime | None = None
    load_before_kg: float | None = None
    load_after_kg: float | None = None
    sentences: int = 0
    """bad_checksum / torn_sentence / gps_loss: sentences corrupted, cut or void."""


class TruckLedger(msgspec.Struct, kw_only=True):
    truck_id: str
    plate: str
    start_ts: datetime
    points: list[LedgerPoint] = []
    entries: list[LedgerEntry] = []
    sentences_sent: int = 0
    bytes_dropped: int = 0
    """Written while the pty was full (nobody reading): lost, as on a real serial line."""

    def of_kind(self, kind: str) -> list[LedgerEntry]:
        return [e for e in self.entries if e.kind == kind]


OnEvent = Callable[[LedgerPoint | LedgerEntry], None]


# ------------------------------------------------------------------------------- motion model


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


class Polyline:
    """A polyline with positions by distance along it (linear in lat/lon: segments are short)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        self.points = list(points)
        self.cum = [0.0]
        for a, b in zip(self.points, self.points[1:], strict=False):
            self.cum.append(self.cum[-1] + _distance_m(a, b))

    @property
    def length(self) -> float:
        return self.cum[-1]

    def at(self, d: float) -> tuple[float, float, float]:
        """(lat, lon, heading) at `d` metres from the start, clamped to the ends."""
        d = min(max(d, 0.0), self.length)
        for i in range(len(self.points) - 1):
            if d <= self.cum[i + 1] or i == len(self.points) - 2:
                a, b = self.points[i], self.points[i + 1]
                seg = self.cum[i + 1] - self.cum[i]
                f = 0.0 if seg == 0 else (d - self.cum[i]) / seg
                return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), _bearing(a, b)
        lat, lon = self.points[0]
        return lat, lon, 0.0


@dataclass(frozen=True)
class _State:
    lat: float
    lon: float
    speed_kmh: float
    heading_deg: float
    phase: Phase
    lid_closed: bool
    bed_raised: bool
    load_kg: float
    ignition: bool = True
    dump: Literal["dump", "dump_outside"] | None = None  # set on the tick a dump starts


def _trips(spec: TruckSpec, rng: random.Random, dump_outside: Incident | None) -> Iterator[_State]:
    """The truck's motion, one state per simulated second; endless (round trip after round trip)."""
    route = [(p.lat, p.lon) for p in spec.route]
    out, back = Polyline(route), Polyline(route[::-1])
    load = float(spec.load_kg)
    lat0, lon0 = route[0]
    head0 = _bearing(route[0], route[1]) if len(route) > 1 else 0.0
    for _ in range(STOP_S):
        yield _State(lat0, lon0, 0.0, head0, "loaded", True, False, load)
    first = True
    while True:
        stop_at = out.length * dump_outside.at_fraction if first and dump_outside else None
        d = 0.0
        while d < out.length:
            speed = max(5.0, spec.speed_kmh + rng.uniform(-2.0, 2.0))
            step = speed / 3.6
            if stop_at is not None and d + step >= stop_at:
                d = stop_at
                lat, lon, head = out.at(d)
                assert dump_outside is not None
                after = load * (1.0 - dump_outside.drop_fraction)
                yield from _dump(lat, lon, head, "outbound", load, after, "dump_outside")
                load, stop_at = after, None
                continue
            d = min(d + step, out.length)
            lat, lon, head = out.at(d)
            yield _State(lat, lon, speed, head, "outbound", True, False, load)
        lat, lon, head = out.at(out.length)
        residual = rng.uniform(0.0, 80.0) if load > 80.0 else load
        yield from _dump(lat, lon, head, "dumping", load, residual, "dump")
        load = residual
        d = 0.0
        while d < back.length:
            speed = max(5.0, spec.speed_kmh + rng.uniform(-2.0, 2.0))
            d = min(d + speed / 3.6, back.length)
            lat, lon, head = back.at(d)
            yield _State(lat, lon, speed, head, "inbound", True, False, load)
        lat, lon, head = back.at(back.length)
        first = False
        for i in range(LOADING_S):  # loading at the origin: lid open, standing, load rising
            filled = load + (spec.load_kg - load) * (i + 1) / LOADING_S
            yield _State(lat, lon, 0.0, head, "loading", i == LOADING_S - 1, False, filled)
        load = float(spec.load_kg)


def _dump(
    lat: float, lon: float, head: float, phase: Phase, before: float, after: float,
    kind: Literal["dump", "dump_outside"],
) -> Iterator[_State]:
    for _ in range(STOP_S):
        yield _State(lat, lon, 0.0, head, phase, True, False, before)
    for i in range(DUMP_S):
        load = before + (after - before) * (i + 1) / DUMP_S
        yield _State(lat, lon, 0.0, head, "dumping", True, True, load, dump=kind if i == 0 else None)
    for _ in range(STOP_S):
        yield _State(lat, lon, 0.0, head, phase, True, False, after)


# ------------------------------------------------------------------------------------ devices


class GpsPty:
    """A pty whose slave end (raw mode) is symlinked at `path`; the sim writes the master end."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> int:
        """Write what fits; return the number of bytes dropped."""
        try:
            return len(data) - os.write(self.master, data)
        except BlockingIOError:
            return len(data)
        except OSError:  # EIO: no reader ever attached yet on some kernels
            return len(data)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class IoModuleSim:
    """The I/O module's tables as its profile lays them out; `set` writes one tick's state."""

    def __init__(self, profile: str = DEFAULT) -> None:
        self.map: IoMap = io_map(profile)
        self.image = ProfileImage(self.map.spans)

    def set(self, *, lid_closed: bool, bed_raised: bool, ignition: bool, load_kg: float,
            fault: bool = False) -> None:
        prof, fields = self.map.profile, self.map.fields
        for role, on in (("lid_closed", lid_closed), ("bed_raised", bed_raised), ("ignition", ignition)):
            self.image.write(fields[role], on != getattr(prof, role).invert)
        self.image.write(fields["load"], round(load_kg))
        if prof.fault is not None:
            self.image.write(fields["fault"], prof.fault.mask if fault else 0)

    def device(self, unit_id: int) -> SimDevice:
        return self.image.device(unit_id)


def _set_io(io: IoModuleSim, s: _State, load_kg: float) -> None:
    io.set(lid_closed=s.lid_closed, bed_raised=s.bed_raised, ignition=s.ignition, load_kg=load_kg)


# ---------------------------------------------------------------------------------------- run


async def run_truck_sim(
    spec: TruckSpec,
    *,
    gps_path: str | Path,
    io_port: int | None = None,
    seed: int = 1,
    duration_s: float | None = None,
    time_scale: float = 1.0,
    incidents: Sequence[Incident] = (),
    on_event: OnEvent | None = None,
    io_host: str = "127.0.0.1",
    unit_id: int = 1,
    start_utc: datetime | None = None,
    io_profile: str = DEFAULT,
    io_rtu_path: str | Path | None = None,
    baudrate: int = 9600,
) -> TruckLedger:
    """Drive `spec` for `duration_s` simulated seconds (None: one round trip); return the ledger.

    The I/O module speaks `io_profile` on Modbus TCP `io_host`:`io_port`, or RTU on a pty at
    `io_rtu_path` (give one of the two; `baudrate` is the RTU line's)."""
    rng = random.Random(seed)
    start = (start_utc or datetime.now(UTC)).replace(microsecond=0)
    ledger = TruckLedger(truck_id=spec.id, plate=spec.plate, start_ts=start)
    dump_outside = next((i for i in incidents if i.kind == "dump_outside"), None)
    windows = [i for i in incidents if i.kind != "dump_outside"]
    open_entries: dict[int, LedgerEntry] = {}
    io = IoModuleSim(io_profile)
    served = contextlib.AsyncExitStack()
    await served.enter_async_context(
        serve([io.device(unit_id)], tcp_port=io_port, host=io_host, rtu_path=io_rtu_path, baudrate=baudrate))
    pty = GpsPty(gps_path)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def record(item: LedgerPoint | LedgerEntry) -> None:
        if on_event is not None:
            on_event(item)

    try:
        round_trip_done = False
        for t, state in enumerate(_trips(spec, rng, dump_outside)):
            if duration_s is not None and t >= duration_s:
                break
            if duration_s is None and round_trip_done and state.phase != "loading":
                break
            round_trip_done = round_trip_done or state.phase == "loading"
            ts = start + timedelta(seconds=t)
            active = {i.kind: i for i in windows if i.at_s <= t < i.at_s + i.duration_s}
            if "uncovered" in active:
                state = replace(state, lid_closed=False)
            gps_ok = "gps_loss" not in active
            noise = rng.uniform(-10.0, 10.0) if state.load_kg > 10.0 else 0.0
            _set_io(io, state, max(0.0, state.load_kg + noise))
            await asyncio.sleep(0)  # let the Modbus server answer between the tick's writes, even when behind
            rmc = nmea_encode.rmc(ts, state.lat, state.lon, state.speed_kmh, state.heading_deg, valid=gps_ok)
            gga = nmea_encode.gga(ts, state.lat, state.lon, valid=gps_ok)
            affected: dict[str, int] = {}
            if "gps_loss" in active:
                affected["gps_loss"] = 2
            if "bad_checksum" in active:
                rmc, affected["bad_checksum"] = nmea_encode.corrupt_checksum(rmc), 1
            elif "torn_sentence" in active:
                rmc, affected["torn_sentence"] = nmea_encode.torn(rmc, rng.randint(10, len(rmc) - 5)), 1
            ledger.bytes_dropped += pty.write(rmc + gga)
            ledger.sentences_sent += 2
            _track_windows(ledger, windows, open_entries, t, ts, state, affected, record)
            if state.dump is not None:
                entry = LedgerEntry(
                    kind=state.dump, start_s=t, start_ts=ts, lat=state.lat, lon=state.lon,
                    end_s=t + DUMP_S, end_ts=ts + timedelta(seconds=DUMP_S),
                    load_before_kg=ledger.points[-1].load_kg if ledger.points else None,
                )
                ledger.entries.append(entry)
                record(entry)
            if ledger.points and ledger.points[-1].bed_raised and not state.bed_raised:
                last = next(e for e in reversed(ledger.entries) if e.kind in ("dump", "dump_outside"))
                last.load_after_kg = state.load_kg
            point = LedgerPoint(
                t_s=t, ts=ts, lat=state.lat, lon=state.lon, speed_kmh=state.speed_kmh,
                heading_deg=state.heading_deg, phase=state.phase, lid_closed=state.lid_closed,
                bed_raised=state.bed_raised, load_kg=state.load_kg, ignition=state.ignition,
                gps_valid=gps_ok,
            )
            ledger.points.append(point)
            record(point)
            delay = t0 + (t + 1) / time_scale - loop.time()
            await asyncio.sleep(max(0.0, delay))
    finally:
        await served.aclose()
        pty.close()
        if ledger.points:  # windows still open when the run ends close after its last tick
            end = ledger.points[-1]
            for open_entry in open_entries.values():
                if open_entry.end_s is None:
                    open_entry.end_s, open_entry.end_ts = end.t_s + 1, end.ts + timedelta(seconds=1)
    return ledger


def _track_windows(
    ledger: TruckLedger, windows: Sequence[Incident], open_entries: dict[int, LedgerEntry], t: int,
    ts: datetime, state: _State, affected: dict[str, int], record: OnEvent,
) -> None:
    """Open a ledger entry when an incident window starts, count its sentences, close it at the end."""
    for idx, inc in enumerate(windows):
        inside = inc.at_s <= t < inc.at_s + inc.duration_s
        entry = open_entries.get(idx)
        if inside and entry is None:
            entry = open_entries[idx] = LedgerEntry(
                kind=inc.kind, start_s=t, start_ts=ts, lat=state.lat, lon=state.lon
            )
            ledger.entries.append(entry)
            record(entry)
        if inside and entry is not None:
            entry.sentences += affected.get(inc.kind, 0)
        if not inside and entry is not None and entry.end_s is None:
            entry.end_s, entry.end_ts = t, ts

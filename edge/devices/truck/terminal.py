"""Muck-truck (渣土车) terminal: GPS fixes + I/O readings in, `TruckTelemetry` events out.

`TruckReporter` is pure (the caller passes the clocks): it emits a report every
`report_interval_s`, and at once when the lid, bed or ignition changes or the load moves by more
than `load_step_kg`, so a dump is reported when it happens, not up to an interval later.

RMC is the source of position, speed, course and time (GGA has no date, speed or course; its
satellites/HDOP have no contract field yet). `gps_fix` is False when the last fix was void or is
older than `fix_stale_s`; the event then carries the last known position. `ts` is the GPS UTC
time of the fix when it is valid and fresh (the position and its time agree, and the truck's
clock cannot drift), else the local UTC clock. Without an I/O reading newer than `io_stale_s`
(the module unreachable) nothing is reported: lid, bed and load are then unknown, and repeating
the last reading as current would hide the fault; the agent judges the silent truck offline.

`run_truck_terminal` is the thin transport: a pyserial reader thread for the GPS port, a
Modbus poll loop for the I/O module, both retrying with capped backoff; it never raises.
`TruckDriver` is the kind's driver; the terminal keeps GPS time, so its offset is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time as time_mod
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec
import serial

from contract.events import Envelope, Ident, TruckTelemetry
from edge.devices.base import DeviceSpec, Driver
from edge.devices.profiles import DEFAULT, ProfileError
from edge.devices.truck.io_module import IoError, IoModuleError, IoReading, Transport, TruckIoClient, io_map
from edge.devices.truck.nmea import GpsFix, NmeaError, NmeaReader

log = logging.getLogger(__name__)

Positive = Annotated[float, msgspec.Meta(gt=0)]
MAX_SPEED_KMH = 200.0  # the contract's bound; a receiver glitch above it is clipped


class TruckTerminalConfig(DeviceSpec, frozen=True, tag="truck"):
    """One truck terminal in the site config; site_id is filled in from the site."""

    kind: ClassVar[str] = "truck"
    site_id: Ident
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    gps_port: str
    gps_baudrate: int = 9600
    io_transport: Transport = "tcp"
    io_host: str = "127.0.0.1"
    io_port: int = 502
    io_serial_port: str = ""
    io_baudrate: int = 9600
    io_unit_id: Annotated[int, msgspec.Meta(ge=0, le=247)] = 1
    io_profile: str = DEFAULT
    """The I/O module model's map: a shipped profile's name (edge/devices/profiles/vendors/truck_io/)
    or a path to a vendor's profile file."""
    io_poll_s: Positive = 0.5
    report_interval_s: Positive = 10.0
    load_step_kg: Positive = 500.0
    fix_stale_s: Positive = 5.0
    io_stale_s: Positive = 5.0
    retry_max_s: Positive = 10.0

    def __post_init__(self) -> None:
        try:
            io_map(self.io_profile)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Reported:
    lid_closed: bool
    bed_raised: bool
    ignition: bool
    load_kg: float


class TruckReporter:
    """State machine of one truck terminal; `now` is a monotonic clock in seconds."""

    def __init__(self, cfg: TruckTerminalConfig) -> None:
        self.cfg = cfg
        self._rmc: GpsFix | None = None  # last RMC, valid or void
        self._rmc_at = float("-inf")
        self._pos: tuple[float, float] | None = None
        self._speed = 0.0
        self._heading = 0.0
        self._io: IoReading | None = None
        self._io_at = float("-inf")
        self._last: _Reported | None = None
        self._last_at = float("-inf")

    def on_fix(self, fix: GpsFix, now: float) -> None:
        if fix.sentence != "RMC":
            return
        self._rmc, self._rmc_at = fix, now
        if fix.valid and fix.lat is not None and fix.lon is not None:
            self._pos = (fix.lat, fix.lon)
            self._speed = min(fix.speed_kmh or 0.0, MAX_SPEED_KMH)
            if fix.course_deg is not None:
                self._heading = fix.course_deg % 360.0

    def on_io(self, reading: IoReading, now: float) -> None:
        self._io, self._io_at = reading, now

    def fix_ok(self, now: float) -> bool:
        return (
            self._rmc is not None
            and self._rmc.valid
            and self._rmc.timestamp is not None
            and now - self._rmc_at <= self.cfg.fix_stale_s
        )

    def poll(self, now: float, wall: datetime) -> TruckTelemetry | None:
        """The event due at `now`, if any; `wall` (UTC) is the fallback timestamp."""
        if self._pos is None or self._io is None or now - self._io_at > self.cfg.io_stale_s:
            return None  # nothing truthful to say: no position ever, or no (recent) I/O reading
        io = self._io
        state = _Reported(io.lid_closed, io.bed_raised, io.ignition, io.load_kg)
        last = self._last
        due = (
            last is None
            or now - self._last_at >= self.cfg.report_interval_s
            or (state.lid_closed, state.bed_raised, state.ignition)
            != (last.lid_closed, last.bed_raised, last.ignition)
            or abs(state.load_kg - last.load_kg) > self.cfg.load_step_kg
        )
        if not due:
            return None
        self._last, self._last_at = state, now
        fix_ok = self.fix_ok(now)
        ts = self._rmc.timestamp if fix_ok and self._rmc is not None else None
        lat, lon = self._pos
        return TruckTelemetry(
            msg_id="",
            device_id=self.cfg.id,
            site_id=self.cfg.site_id,
            ts=ts or wall,
            plate=self.cfg.plate,
            lat=lat,
            lon=lon,
            speed_kmh=self._speed if fix_ok else 0.0,
            lid_closed=io.lid_closed,
            bed_raised=io.bed_raised,
            load_kg=io.load_kg,
            ignition=io.ignition,
            heading_deg=self._heading,
            gps_fix=fix_ok,
        )


# ---------------------------------------------------------------------------------- transport


@dataclass
class TerminalStats:
    """What the transport saw; pass one in to read it while or after it runs.

    `nmea` is the reader's counter: ``fix:RMC``, ``skipped:GSV``, ``error:bad checksum``, ...
    """

    nmea: Counter[str]
    io_errors: Counter[str]
    events: int = 0
    gps_reconnects: int = 0
    io_reconnects: int = 0

    def __init__(self) -> None:
        self.nmea, self.io_errors = Counter(), Counter()
        self.events = self.gps_reconnects = self.io_reconnects = 0


def _backoff(attempt: int, cap: float) -> float:
    return float(min(cap, 0.2 * 2 ** min(attempt, 10)))


def _gps_thread(
    cfg: TruckTerminalConfig,
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[bytes],
    halt: threading.Event,
    stats: TerminalStats,
) -> None:
    """Blocking pyserial reads, chunks handed to the event loop; reopens the port on errors."""
    attempt = 0
    while not halt.is_set():
        try:
            with serial.Serial(cfg.gps_port, cfg.gps_baudrate, timeout=0.2) as port:
                attempt = 0
                while not halt.is_set():
                    chunk = port.read(port.in_waiting or 1)
                    if chunk:
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except (serial.SerialException, OSError) as exc:
            stats.gps_reconnects += 1
            delay = _backoff(attempt, cfg.retry_max_s)
            attempt += 1
            log.warning("truck %s: GPS port %s: %s; retry in %.1fs", cfg.id, cfg.gps_port, exc, delay)
            halt.wait(delay)


async def _io_loop(
    cfg: TruckTerminalConfig,
    reporter: TruckReporter,
    wake: asyncio.Queue[bytes],
    stop: asyncio.Event,
    stats: TerminalStats,
) -> None:
    client = TruckIoClient(
        cfg.io_transport,
        host=cfg.io_host,
        port=cfg.io_port,
        serial_port=cfg.io_serial_port,
        baudrate=cfg.io_baudrate,
        unit_id=cfg.io_unit_id,
        timeout=max(0.5, min(3.0, cfg.io_poll_s * 4)),
        profile=cfg.io_profile,
    )
    attempt = 0
    try:
        while not stop.is_set():
            delay = cfg.io_poll_s
            try:
                reading = await client.read()
                attempt = 0
                if isinstance(reading, IoError):
                    stats.io_errors[reading.reason.split(" ", 1)[0]] += 1
                    log.warning("truck %s: I/O reading rejected: %s", cfg.id, reading.reason)
                else:
                    reporter.on_io(reading, time_mod.monotonic())
                    wake.put_nowait(b"")  # let the main loop report a change at once
            except (TimeoutError, IoModuleError, OSError) as exc:
                stats.io_reconnects += 1
                delay = _backoff(attempt, cfg.retry_max_s)
                attempt += 1
                log.warning("truck %s: I/O module: %s; retry in %.1fs", cfg.id, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        client.close()


async def run_truck_terminal(
    cfg: TruckTerminalConfig,
    emit: Callable[[Envelope], Awaitable[None]],
    stop: asyncio.Event,
    *,
    stats: TerminalStats | None = None,
) -> None:
    """Read GPS and I/O, emit `TruckTelemetry` (msg_id "", the outbox assigns it) until `stop`."""
    stats = stats if stats is not None else TerminalStats()
    reporter = TruckReporter(cfg)
    reader = NmeaReader()
    reader.stats = stats.nmea  # fix:RMC, skipped:GSV, error:<reason kind>
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    halt = threading.Event()
    gps = threading.Thread(
        target=_gps_thread, args=(cfg, loop, chunks, halt, stats), daemon=True, name=f"gps-{cfg.id}"
    )
    gps.start()
    io_task = asyncio.create_task(_io_loop(cfg, reporter, chunks, stop, stats))
    tick = min(cfg.report_interval_s, cfg.io_poll_s, 1.0) / 2
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(chunks.get(), tick)
            except TimeoutError:
                chunk = b""
            now = time_mod.monotonic()
            for item in reader.feed(chunk):
                if isinstance(item, NmeaError):
                    log.warning("truck %s: NMEA rejected (%s): %r", cfg.id, item.reason, item.raw)
                else:
                    reporter.on_fix(item, now)
            event = reporter.poll(now, datetime.now(UTC))
            if event is not None:
                try:
                    await emit(event)
                    stats.events += 1
                except Exception:  # the sink's problem must not stop the terminal
                    log.exception("truck %s: emit failed", cfg.id)
    finally:
        halt.set()
        io_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await io_task
        await asyncio.to_thread(gps.join, 2.0)


class TruckDriver(Driver[TruckTerminalConfig]):
    """The muck-truck kind: GPS + I/O module; silent for a few report intervals means offline."""

    kind: ClassVar[str] = "truck"
    config = TruckTerminalConfig
    loggers = (__name__,)
    has_clock = True

    async def run(self) -> None:
        await run_truck_terminal(self.cfg, self.ctx.emit, self.ctx.stop)

    def stale_after(self) -> float:
        return 3 * self.cfg.report_interval_s + 2.0

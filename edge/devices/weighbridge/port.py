"""Weighbridge transport and driver: pyserial on the indicator and ANPR ports feeding the workflow.

Runs in its own thread (pyserial is blocking). A port that is missing or fails is reopened
with backoff (1 s doubling to 30 s) and the device's DeviceStatus says why (`ctx.report`); the
workflow's state survives a reopen and a driver restart. Nothing here raises out of `run`.
A ticket whose device time is outside the agent's bound gets the `clock_skew` flag.

Plate cameras come on the line port (`anpr_port`) or push HTTP (`anpr_http`: an asyncio server
on the agent's loop, anpr_http.py); both queue their reads, which the reading thread hands to
the workflow before the indicator bytes it received after them (the loop never waits on a
commit). A pushed read's camera frame time moves it back on the monotonic clock (by at most
`MAX_CAMERA_LAG_S`: a camera clock further off is not trusted), so the plate is matched to the
weight when the camera saw it.
First passes of two-pass weighing are stored in the outbox's state table (`pending_key`), in the
same transaction as the ticket that ends them, so a restart neither loses nor repeats one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

import serial

from contract.events import DeviceState, Envelope, Weighing, WeighingFlag
from edge.devices.base import DeviceContext, Driver, Numbered
from edge.devices.weighbridge.anpr import AnprLineReader, PlateRead
from edge.devices.weighbridge.anpr_http import AnprHttpServer
from edge.devices.weighbridge.frames import FrameError, make_framer
from edge.devices.weighbridge.workflow import Ticket, WeighbridgeDevice, WeighbridgeWorkflow

log = logging.getLogger("edge.weighbridge")

READ_TIMEOUT_S = 0.05
MAX_BACKOFF_S = 30.0
MAX_CAMERA_LAG_S = 30.0
"""A pushed plate's frame time is used when it is at most this far behind the edge's clock."""
EXPIRE_EVERY_S = 10.0


class WeighbridgePort:
    """One weighbridge: ports, framer, ANPR reader and workflow; tickets go to `ctx.store`."""

    def __init__(self, device: WeighbridgeDevice, ctx: DeviceContext) -> None:
        self.device = device
        self.ctx = ctx
        self.workflow = WeighbridgeWorkflow(device, ctx.vehicles)
        self.pending_key = f"weighbridge:{device.id}:first_passes"
        self.workflow.load_pending(ctx.get_state(self.pending_key))
        self.framer = make_framer(device.format, checksum=device.checksum, unit=device.unit,
                                  spec=device.frame)
        self.anpr = AnprLineReader()
        self.state: DeviceState | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one feed at a time (the reading thread, tests)
        self._plates: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
        """Plate reads from any input (the HTTP server's loop, the line port), in receive order."""
        self._next_expiry = 0.0

    def on_plate_read(self, read: PlateRead, received: float | None = None) -> None:
        """A plate from any camera input; `received` is the monotonic receive time (default now)."""
        t = time.monotonic() if received is None else received
        if read.frame_ts is not None:
            lag = (datetime.now(UTC) - read.frame_ts).total_seconds()
            if 0 <= lag <= MAX_CAMERA_LAG_S:
                t -= lag
            else:
                log.info("%s: plate %s: camera frame time %s is %.0f s off the edge's clock; receive"
                         " time used", self.device.id, read.plate, read.frame_ts.isoformat(), lag)
        log.info("%s: plate %s (%s%s)", self.device.id, read.plate, read.source,
                 "" if read.confidence is None else f", confidence {read.confidence}")
        self._plates.put((t, read.plate))  # taken by the reading thread: the loop never waits on it

    def _take_plates(self) -> None:
        while True:
            try:
                t, plate = self._plates.get_nowait()
            except queue.Empty:
                return
            self.workflow.on_plate(t, plate)

    def run(self, stop: threading.Event) -> None:
        """Read until `stop` is set, reopening failed ports with backoff."""
        backoff = 1.0
        while not stop.is_set():
            ports: list[serial.Serial] = []
            try:
                ports = self._open()
                self._report(DeviceState.ONLINE, None)
                backoff = 1.0
                self._read(ports, stop)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._report(DeviceState.OFFLINE, f"{type(exc).__name__}: {exc}")
                log.warning("%s: %s; retrying in %.0f s", self.device.id, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                for p in ports:
                    try:
                        p.close()
                    except Exception as exc:  # closing a vanished port must not end the loop
                        log.debug("close failed: %s", exc)
        log.info(
            "%s: stopped (%d tickets, %d frame errors)",
            self.device.id,
            self.workflow.tickets,
            self.workflow.frame_errors,
        )

    def _open(self) -> list[serial.Serial]:
        d = self.device
        ports = [
            serial.Serial(
                d.port,
                d.baudrate,
                bytesize=d.bytesize,
                parity=d.parity,
                stopbits=d.stopbits,
                timeout=READ_TIMEOUT_S,
            )
        ]
        if d.anpr_port:
            try:
                ports.append(serial.Serial(d.anpr_port, 9600, timeout=0))
            except Exception:
                ports[0].close()
                raise
        return ports

    def _read(self, ports: list[serial.Serial], stop: threading.Event) -> None:
        indicator = ports[0]
        camera = ports[1] if len(ports) > 1 else None
        while not stop.is_set():
            data = indicator.read(max(1, indicator.in_waiting))
            t = time.monotonic()
            if camera is not None and camera.in_waiting:
                for plate in self.anpr.feed(camera.read(camera.in_waiting)):
                    self.on_plate_read(PlateRead(plate), t)
            if data:
                self.feed(t, data)

    def feed(self, t: float, data: bytes) -> None:
        """Indicator bytes received at monotonic time `t` (also the seam for tests)."""
        with self._lock:
            self._take_plates()
            for item in self.framer.feed(data):
                if isinstance(item, FrameError):
                    self.workflow.on_frame_error(item)
                    continue
                ticket = self.workflow.on_reading(t, item)
                if self.workflow.fault != self.last_error:
                    fault = self.workflow.fault  # a refused indicator is out of service: offline, why
                    self._report(DeviceState.OFFLINE if fault else DeviceState.ONLINE, fault)
                self._settle([] if ticket is None else [ticket])
            if t >= self._next_expiry:
                self._next_expiry = t + EXPIRE_EVERY_S
                self._settle(self.workflow.expire(t))

    def _settle(self, tickets: list[Ticket]) -> None:
        """Store tickets, and the first passes when they changed, in one outbox transaction."""
        if not tickets and not self.workflow.pending_changed:
            return
        state = {self.pending_key: self.workflow.pending_json()} if self.workflow.pending_changed else None
        self.emit(tickets, state)

    def emit(self, tickets: Ticket | list[Ticket], state: dict[str, str] | None = None) -> None:
        d, site = self.device, self.ctx.site_id
        batch = [tickets] if isinstance(tickets, Ticket) else tickets
        events: list[Numbered] = []
        kept: list[Ticket] = []
        for ticket in batch:
            if self.ctx.clock.check(d.id, ticket.ts) and WeighingFlag.CLOCK_SKEW not in ticket.flags:
                ticket = dataclasses.replace(ticket, flags=(*ticket.flags, WeighingFlag.CLOCK_SKEW))
            try:  # a ticket the contract rejects: log it, never crash (built here, once more in store)
                ticket.to_weighing(msg_id="x:0:0", ticket_id="x", device_id=d.id, site_id=site)
            except ValueError as exc:
                log.error("%s: ticket for %s not valid: %s (%r)", d.id, ticket.plate, exc, ticket)
                continue
            events.append(Numbered(Weighing, self._builder(ticket)))
            kept.append(ticket)
        msg_ids = self.ctx.store(events, state)
        for ticket, msg_id in zip(kept, msg_ids, strict=True):
            if msg_id is not None:
                log.info("%s: ticket %s plate=%s gross=%.0f net=%.0f flags=%s", d.id, msg_id, ticket.plate,
                         ticket.gross_kg, ticket.net_kg, [f.value for f in ticket.flags])

    def _builder(self, ticket: Ticket) -> Callable[[str, int], Envelope]:
        d, site, epoch = self.device, self.ctx.site_id, self.ctx.epoch

        def build(msg_id: str, seq: int) -> Envelope:
            ticket_id = f"{d.id}-{epoch}-{seq}"
            return ticket.to_weighing(msg_id=msg_id, ticket_id=ticket_id, device_id=d.id, site_id=site)

        return build

    def _report(self, state: DeviceState, error: str | None) -> None:
        if state == self.state and error == self.last_error:
            return
        self.state, self.last_error = state, error
        self.ctx.report(state, error)


class WeighbridgeDriver(Driver[WeighbridgeDevice]):
    """The weighbridge kind: one port thread per device; it reports its own state."""

    kind: ClassVar[str] = "weighbridge"
    config = WeighbridgeDevice
    reports_state = True

    def __init__(self, cfg: WeighbridgeDevice, ctx: DeviceContext) -> None:
        super().__init__(cfg, ctx)
        self.port = WeighbridgePort(cfg, ctx)

    async def run(self) -> None:
        http = self.cfg.anpr_http
        if http is None:
            await asyncio.to_thread(self.port.run, self.ctx.halt)
            return
        server = AnprHttpServer(self.cfg.id, self.port.on_plate_read, host=http.host, port=http.port,
                                path=http.path, max_body_bytes=http.max_body_bytes)
        self.http = server
        serving = asyncio.create_task(self._serve(server))
        try:
            await asyncio.to_thread(self.port.run, self.ctx.halt)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    async def _serve(self, server: AnprHttpServer) -> None:
        """The camera endpoint until the agent stops; a port that cannot be bound is retried with
        backoff and logged with the reason; the indicator is read meanwhile."""
        backoff = 1.0
        while not self.ctx.stop.is_set():
            try:
                await server.serve(self.ctx.stop)
                return
            except OSError as exc:
                log.warning("%s: anpr http: cannot listen on %s:%d: %s; retrying in %.0f s", self.cfg.id,
                            server.host, server.port, exc, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

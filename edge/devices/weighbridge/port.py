"""Weighbridge transport and driver: pyserial on the indicator and ANPR ports feeding the workflow.

Runs in its own thread (pyserial is blocking). A port that is missing or fails is reopened
with backoff (1 s doubling to 30 s) and the device's DeviceStatus says why (`ctx.report`); the
workflow's state survives a reopen and a driver restart. Nothing here raises out of `run`.
A ticket whose device time is outside the agent's bound gets the `clock_skew` flag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import ClassVar

import serial

from contract.events import DeviceState, Envelope, Weighing, WeighingFlag
from edge.devices.base import DeviceContext, Driver, Numbered
from edge.devices.weighbridge.anpr import AnprLineReader
from edge.devices.weighbridge.frames import FrameError, make_framer
from edge.devices.weighbridge.workflow import Ticket, WeighbridgeDevice, WeighbridgeWorkflow

log = logging.getLogger("edge.weighbridge")

READ_TIMEOUT_S = 0.05
MAX_BACKOFF_S = 30.0


class WeighbridgePort:
    """One weighbridge: ports, framer, ANPR reader and workflow; tickets go to `ctx.store`."""

    def __init__(self, device: WeighbridgeDevice, ctx: DeviceContext) -> None:
        self.device = device
        self.ctx = ctx
        self.workflow = WeighbridgeWorkflow(device, ctx.vehicles)
        self.framer = make_framer(device.format, checksum=device.checksum, unit=device.unit)
        self.anpr = AnprLineReader()
        self.state: DeviceState | None = None
        self.last_error: str | None = None

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
                    log.info("%s: plate %s", self.device.id, plate)
                    self.workflow.on_plate(t, plate)
            if data:
                self.feed(t, data)

    def feed(self, t: float, data: bytes) -> None:
        """Indicator bytes received at monotonic time `t` (also the seam for tests)."""
        for item in self.framer.feed(data):
            if isinstance(item, FrameError):
                self.workflow.on_frame_error(item)
                continue
            ticket = self.workflow.on_reading(t, item)
            if self.workflow.fault != self.last_error:
                fault = self.workflow.fault  # a refused indicator is out of service: offline, why
                self._report(DeviceState.OFFLINE if fault else DeviceState.ONLINE, fault)
            if ticket is not None:
                self.emit(ticket)

    def emit(self, ticket: Ticket) -> None:
        d, site, epoch = self.device, self.ctx.site_id, self.ctx.epoch
        if self.ctx.clock.check(d.id, ticket.ts) and WeighingFlag.CLOCK_SKEW not in ticket.flags:
            ticket = dataclasses.replace(ticket, flags=(*ticket.flags, WeighingFlag.CLOCK_SKEW))

        def build(msg_id: str, seq: int) -> Envelope:
            ticket_id = f"{d.id}-{epoch}-{seq}"
            return ticket.to_weighing(msg_id=msg_id, ticket_id=ticket_id, device_id=d.id, site_id=site)

        try:
            [msg_id] = self.ctx.store([Numbered(Weighing, build)])
        except ValueError as exc:  # a ticket the contract rejects: log it, never crash
            log.error("%s: ticket for %s not valid: %s (%r)", d.id, ticket.plate, exc, ticket)
            return
        if msg_id is not None:
            log.info(
                "%s: ticket %s plate=%s gross=%.0f net=%.0f flags=%s",
                d.id,
                msg_id,
                ticket.plate,
                ticket.gross_kg,
                ticket.net_kg,
                [f.value for f in ticket.flags],
            )

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
        await asyncio.to_thread(self.port.run, self.ctx.halt)

"""The edge agent for one site: supervised device drivers -> outbox -> one MQTT session.

Weighbridges run in their own threads (pyserial blocks); sorting stations and truck terminals
are asyncio tasks on the agent's loop. Each device is supervised: a driver that raises (or
returns while the agent runs) is restarted with backoff (1 s doubling to
`device_backoff_max_s`) and reported offline in `device_status`; the others carry on.

Every event goes into the outbox before it is published, with its real msg_id, on
`ws/v1/{site}/{kind}/{device}/{event}`. A sorting station's drop cursor is stored in the
outbox in the same transaction as the deposits it produced, so drops made while the agent
was down are caught up on restart (up to the station's ring) and none is sent twice.

Status: a `device_status` per device on every change of state (the weighbridge transport
reports its own) and for every device plus the agent itself every `status_interval_s`
(state, outbox depth, last error, the device's clock offset where it has a clock of its own).
Drivers retry their transports themselves and only log, so the agent keeps the last warning a
driver logged for a device as its `last_error`, and judges a station or truck offline when
it has gone quiet for a few poll or report intervals.

SIGINT/SIGTERM stop the devices, flush the outbox for a few seconds, publish `offline` and
disconnect. Run as `python -m edge.agent --config site.yaml` or `wastestream edge run --config ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import msgspec

from contract import DeviceStatus, encode, mqtt_topic
from contract.events import DeviceState, Envelope, WeighingFlag
from contract.text import printable
from edge.clock import ClockGuard
from edge.config import (
    ConfigError,
    DeviceConfig,
    SiteConfig,
    SortingStationDevice,
    TruckDevice,
    WeighbridgeDevice,
    load_config,
)
from edge.devices.pseudonym import Pseudonymiser, load_key
from edge.devices.sorting_registers import StationSnapshot
from edge.devices.sorting_station import Cursor, SortingStationTracker, run_sorting_station
from edge.devices.truck_terminal import run_truck_terminal
from edge.devices.weighbridge import Ticket
from edge.devices.weighbridge_port import WeighbridgePort
from edge.mqtt_session import MqttSession
from edge.outbox import Build, Outbox

log = logging.getLogger("edge.agent")

RESTART_MIN_S = 1.0
STATUS_TICK_S = 1.0
DRIVER_LOGGERS = ("edge.devices.sorting_station", "edge.devices.truck_terminal")


@dataclasses.dataclass
class Health:
    """What the agent knows about one device, for its device_status."""

    started: float
    stale_after: float
    state: DeviceState | None = None
    last_error: str | None = None
    last_ok: float | None = None
    restarts: int = 0
    reported: tuple[DeviceState, str | None] | None = None

    def ok(self) -> None:
        self.last_ok = time.monotonic()

    def current(self, now: float) -> DeviceState | None:
        """ONLINE while the driver shows life; None until it had a fair chance to."""
        if self.state == DeviceState.OFFLINE and (self.last_ok is None or self.last_ok < self.started):
            return DeviceState.OFFLINE  # the driver raised and has not delivered since its restart
        if self.last_ok is not None and now - self.last_ok <= self.stale_after:
            return DeviceState.ONLINE
        if now - self.started < self.stale_after:
            return None
        return DeviceState.OFFLINE


class _ErrorCapture(logging.Handler):
    """Keeps the last warning a driver logged for a device (drivers log `"<id>: ..."`, args[0] = id)."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(logging.WARNING)
        self.agent = agent

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[0], str) and args[0] in self.agent.health:
            with contextlib.suppress(Exception):
                self.agent.note_error(args[0], record.getMessage())


class _ClockedWeighbridgePort(WeighbridgePort):
    """The weighbridge transport with the agent's clock check: a skewed ticket gets `clock_skew`."""

    def __init__(self, site: SiteConfig, device: WeighbridgeDevice, outbox: Outbox, clock: ClockGuard):
        super().__init__(site, device, outbox)
        self.clock = clock

    def emit(self, ticket: Ticket) -> None:
        if self.clock.check(self.device.id, ticket.ts) and WeighingFlag.CLOCK_SKEW not in ticket.flags:
            ticket = dataclasses.replace(ticket, flags=(*ticket.flags, WeighingFlag.CLOCK_SKEW))
        super().emit(ticket)


class _StoredTracker(SortingStationTracker):
    """Writes each poll's events and the advanced cursor in one outbox transaction.

    It hands the driver nothing to emit: emitting one by one would leave a window where the
    cursor and the stored deposits disagree.
    """

    def __init__(self, agent: Agent, cfg: SortingStationDevice, pseudonymise: Callable[[str], str]) -> None:
        self.agent, self.key = agent, f"cursor:{cfg.id}"
        super().__init__(
            device_id=cfg.id, site_id=cfg.site_id, community_id=cfg.community_id, pseudonymise=pseudonymise,
            fill_step_pct=cfg.fill_step_pct, heartbeat_s=cfg.heartbeat_s, cursor=_parse_cursor(
                agent.outbox.get_state(self.key)),
        )
        if self.cursor is not None:
            log.info("%s: resuming after drop %d (station epoch %d)", cfg.id, self.cursor[1], self.cursor[0])

    def update(self, snap: StationSnapshot, now: datetime) -> list[Envelope]:
        before = self.cursor
        events = super().update(snap, now)
        self.agent.health[self.device_id].ok()
        if events or self.cursor != before:
            state = {} if self.cursor is None else {self.key: f"{self.cursor[0]}:{self.cursor[1]}"}
            try:
                self.agent.store(self.device_id, "sorting_station", events, state)
            except Exception:
                self.cursor = before  # the driver's restart re-reads these drops
                raise
        return []


def _parse_cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    epoch, counter = text.split(":")
    return int(epoch), int(counter)


class Agent:
    """One site's devices, outbox, MQTT session, clock guard and status reports."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.site_id = config.site_id
        self.outbox = Outbox(
            config.outbox.path, max_messages=config.outbox.max_messages, when_full=config.outbox.when_full
        )
        self.session = MqttSession(
            config.mqtt, config.site_id, self.outbox, status_kind=config.devices[0].kind
        )
        self.clock = ClockGuard(config.clock.max_skew_s, config.clock.not_before)
        now = time.monotonic()
        self.health = {d.id: Health(now, _stale_after(d)) for d in config.devices}
        self.last_error: str | None = None
        self.stored: Counter[tuple[str, str]] = Counter()  # (device, event) -> events stored
        self.stop = asyncio.Event()
        self._threads_stop = threading.Event()
        self._ports: dict[str, WeighbridgePort] = {}

    # -- storing events
    def store(
        self, device_id: str, kind: str, events: Sequence[Envelope], state: dict[str, str] | None = None
    ) -> None:
        """Put events (msg_id "" from the driver) into the outbox with their real msg_ids."""
        items: list[tuple[str, str, Build]] = []
        for event in events:
            if self.clock.check(device_id, event.ts):
                log.debug("%s: %s with skewed device time %s", device_id, event.event, event.ts)
            topic = mqtt_topic(self.site_id, kind, device_id, event.event)
            items.append((device_id, topic, _builder(event)))
        self.outbox.put_batch(items, state)
        self.stored.update((device_id, e.event) for e in events)

    def emit_for(self, device: DeviceConfig) -> Callable[[Envelope], Awaitable[None]]:
        async def emit(event: Envelope) -> None:
            self.health[device.id].ok()
            await asyncio.to_thread(self.store, device.id, device.kind, [event])

        return emit

    def note_error(self, device_id: str, error: str) -> None:
        self.health[device_id].last_error = printable(error)  # an exception text may hold a newline
        self.last_error = printable(f"{device_id}: {error}")

    # -- running devices
    async def _run_device(self, device: DeviceConfig) -> None:
        if isinstance(device, WeighbridgeDevice):
            port = self._ports.get(device.id)
            if port is None:
                port = _ClockedWeighbridgePort(self.config, device, self.outbox, self.clock)
                self._ports[device.id] = port
            await asyncio.to_thread(port.run, self._threads_stop)
        elif isinstance(device, SortingStationDevice):
            tracker = _StoredTracker(self, device, Pseudonymiser(load_key(
                device.household_key_file, device.household_key_env)))
            await run_sorting_station(device, self.emit_for(device), self.stop, tracker=tracker)
        elif isinstance(device, TruckDevice):
            await run_truck_terminal(device, self.emit_for(device), self.stop)

    async def _supervise(self, device: DeviceConfig) -> None:
        health, backoff = self.health[device.id], RESTART_MIN_S
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await self._run_device(device)
                if self.stop.is_set():
                    return
                raise RuntimeError("driver returned while the agent runs")
            except Exception as exc:
                health.state, health.started = DeviceState.OFFLINE, started
                health.restarts += 1
                self.note_error(device.id, f"{type(exc).__name__}: {exc}")
                log.error("%s: driver failed (%s: %s); restart %d in %.0f s",
                          device.id, type(exc).__name__, exc, health.restarts, backoff)
            if time.monotonic() - started > 10 * self.config.device_backoff_max_s:
                backoff = RESTART_MIN_S  # it ran for a good while: start the backoff over
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), backoff)
            backoff = min(backoff * 2, self.config.device_backoff_max_s)
            health.started, health.state = time.monotonic(), None

    # -- status
    def _device_state(self, device: DeviceConfig, now: float) -> tuple[DeviceState | None, str | None]:
        health = self.health[device.id]
        port = self._ports.get(device.id)
        if isinstance(device, WeighbridgeDevice):
            state = health.state if health.state == DeviceState.OFFLINE else (port.state if port else None)
            error = health.last_error or (port.last_error if port else None)
            return state, error
        return health.current(now), health.last_error

    def _status(self, device_id: str, kind: str, state: DeviceState, error: str | None,
                offset: float | None) -> tuple[str, str, Build]:
        depth = self.outbox.depth()
        site = self.site_id

        def build(msg_id: str, seq: int) -> bytes:
            return encode(DeviceStatus(
                msg_id=msg_id, device_id=device_id, site_id=site, ts=datetime.now(UTC), state=state,
                outbox_depth=depth, last_error=error, clock_offset_s=offset))

        return device_id, mqtt_topic(site, kind, device_id, "device_status"), build

    def status_batch(self, *, heartbeat: bool, now: float | None = None) -> list[tuple[str, str, Build]]:
        """Statuses due: changed devices (stations, trucks), and everyone on a heartbeat."""
        now = time.monotonic() if now is None else now
        items = []
        for device in self.config.devices:
            state, error = self._device_state(device, now)
            if state is None:
                continue
            health = self.health[device.id]
            changed = (state, error) != health.reported and not isinstance(device, WeighbridgeDevice)
            if not (heartbeat or changed):
                continue
            if changed and health.reported is not None and state != health.reported[0]:
                log.info("%s: %s%s", device.id, state.value, f" ({error})" if error else "")
            health.reported = (state, error)
            clock = self.clock.summary(device.id)
            offset = self.clock.get(device.id).offset_s if isinstance(device, TruckDevice) else None
            text = "; ".join(t for t in (error, clock) if t) or None
            items.append(self._status(device.id, device.kind, state, text, offset))
        if heartbeat:
            # the agent itself: no clock offset, MQTT has no broker time (see edge/clock.py)
            items.append(self._status(self.session.status_device, self.config.devices[0].kind,
                                      DeviceState.ONLINE, self.last_error, None))
        return items

    async def _status_loop(self) -> None:
        next_beat = time.monotonic() + self.config.status_interval_s
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), STATUS_TICK_S)
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = max(next_beat + self.config.status_interval_s, now)
                self._log_activity()
            items = self.status_batch(heartbeat=beat, now=now)
            if items:
                try:
                    await asyncio.to_thread(self.outbox.put_batch, items)
                except Exception:
                    log.exception("could not store device statuses")

    def _log_activity(self) -> None:
        """One line per heartbeat: what the drivers produced so far (tickets log themselves)."""
        if self.stored:
            counts = ", ".join(f"{d} {e} {n}" for (d, e), n in sorted(self.stored.items()))
            log.info("stored since start: %s; outbox depth %d", counts, self.outbox.depth())

    # -- lifecycle
    async def run(self, flush_timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(len(self.config.devices) + 8, "edge-io"))
        capture = _ErrorCapture(self)
        for name in DRIVER_LOGGERS:
            logging.getLogger(name).addHandler(capture)
        self.session.start()
        tasks = [asyncio.create_task(self._supervise(d), name=d.id) for d in self.config.devices]
        status = asyncio.create_task(self._status_loop(), name="status")
        log.info("edge agent for %s running %d device(s) (%s); outbox %s (%d pending)",
                 self.site_id, len(tasks), ", ".join(sorted({d.kind for d in self.config.devices})),
                 self.outbox.path, self.outbox.depth())
        try:
            await self.stop.wait()
        finally:
            log.info("stopping")
            self.stop.set()
            self._threads_stop.set()
            await asyncio.gather(*tasks, status, return_exceptions=True)
            self._log_activity()
            await asyncio.to_thread(self.session.stop, flush_timeout)
            self.outbox.close()
            for name in DRIVER_LOGGERS:
                logging.getLogger(name).removeHandler(capture)


def _stale_after(device: DeviceConfig) -> float:
    """Quiet for this long (s) means the device is offline."""
    if isinstance(device, SortingStationDevice):
        return 3 * device.poll_s + device.timeout_s
    if isinstance(device, TruckDevice):
        return 3 * device.report_interval_s + 2.0
    return 30.0


def _builder(event: Envelope) -> Build:
    def build(msg_id: str, seq: int) -> bytes:
        return encode(msgspec.structs.replace(event, msg_id=msg_id))

    return build


async def run_agent(
    config: SiteConfig, *, stop: asyncio.Event | None = None, flush_timeout: float = 5.0
) -> None:
    """Run one site until `stop` is set (or SIGINT/SIGTERM when run in the main thread)."""
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop.set)
    relay = None
    if stop is not None:
        relay = asyncio.create_task(_relay(stop, agent.stop))
    try:
        await agent.run(flush_timeout)
    finally:
        if relay is not None:
            relay.cancel()
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _relay(src: asyncio.Event, dst: asyncio.Event) -> None:
    await src.wait()
    dst.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge.agent", description="Run the wastestream edge agent for one site."
    )
    parser.add_argument("--config", required=True, help="site YAML (see edge/config.py)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run_agent(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

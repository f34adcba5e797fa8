"""The edge agent for one site: supervised device drivers -> outbox -> one MQTT session.

Every device kind is a driver (edge/devices/base.py, listed in edge/devices/registry.py); the agent
gives each device an `AgentContext` (edge/device_context.py: events into the outbox, state
reports) and supervises it: a driver that raises (or returns while the agent runs) is restarted
with backoff (1 s doubling to `device_backoff_max_s`) and reported offline in `device_status`;
the others carry on. Drivers that block run in threads (`ctx.halt`), the others on this loop.

Status (edge/status.py): a `device_status` per device on every change of state and for every
device plus the agent itself every `status_interval_s`. Drivers retry their transports
themselves and only log, so the agent keeps the last warning a driver logged for a device as
its `last_error` (edge/health.py), and judges a device that does not report its own state
offline when it has gone quiet for its driver's `stale_after`.

SIGINT/SIGTERM are a planned stop: the devices stop, every device and the agent itself report
`stopped` with the reason (no alert: the silence is intended), the outbox is flushed for a few
seconds, and the agent disconnects cleanly (the broker drops its Last-Will).
Run as `python -m edge.agent --config site.yaml` or `wastestream edge run --config ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from contract.events import DeviceState
from contract.text import printable
from edge import metrics as edge_metrics
from edge.clock import ClockGuard
from edge.config import ConfigError, DeviceConfig, SiteConfig, load_config
from edge.device_context import AgentContext
from edge.devices.registry import DRIVERS
from edge.health import ErrorCapture, Health
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox
from edge.status import PLANNED_STOP, Item, Running, due_statuses, status_item, stopped_statuses
from wastestream.foundation import cliutil, logs

log = logging.getLogger("edge.agent")

RESTART_MIN_S = 1.0
STATUS_TICK_S = 1.0


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
        self.last_error: str | None = None
        self.stored: Counter[tuple[str, str]] = Counter()  # (device, event) -> events stored
        self.stop = asyncio.Event()
        self.stop_reason = PLANNED_STOP
        self._threads_stop = threading.Event()
        self.health: dict[str, Health] = {}
        self.devices = [self._start(d) for d in config.devices]

    def _start(self, cfg: DeviceConfig) -> Running:
        """The device's driver and context (built once: a driver's state outlives its restarts)."""
        driver_type = DRIVERS[cfg.kind]
        health = self.health[cfg.id] = Health(time.monotonic(), 30.0)
        driver = driver_type(cfg, self.context(cfg))
        health.stale_after = driver.stale_after()
        return Running(driver, health)

    def context(self, cfg: DeviceConfig) -> AgentContext:
        """What the agent gives one device's driver (edge.devices.base.DeviceContext)."""
        return AgentContext(
            site_id=self.site_id, device_id=cfg.id, kind=cfg.kind, outbox=self.outbox, clock=self.clock,
            health=self.health[cfg.id], vehicles=self.config.registry(), stored=self.stored,
            stop=self.stop, halt=self._threads_stop)

    def request_stop(self, reason: str = PLANNED_STOP) -> None:
        """A planned stop (a signal, maintenance): reported as `stopped` with `reason`, not alerted."""
        self.stop_reason = reason
        self.stop.set()

    def note_error(self, device_id: str, error: str) -> None:
        self.health[device_id].last_error = printable(error)  # an exception text may hold a newline
        self.last_error = printable(f"{device_id}: {error}")

    # -- running devices
    async def _supervise(self, device: Running) -> None:
        logs.bind(device=device.id)  # this task's log records carry the device (WS_LOG_FORMAT=json)
        health, backoff = device.health, RESTART_MIN_S
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await device.driver.run()
                if self.stop.is_set():
                    return
                raise RuntimeError("driver returned while the agent runs")
            except Exception as exc:
                if self.stop.is_set():
                    return  # a driver interrupted by the planned stop: not a failure
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
    def status_batch(self, *, heartbeat: bool, now: float | None = None) -> list[Item]:
        """Statuses due: changed devices, and everyone plus the agent itself on a heartbeat."""
        now = time.monotonic() if now is None else now
        items = due_statuses(self.devices, self.outbox, self.clock, self.site_id,
                             heartbeat=heartbeat, now=now)
        if heartbeat:
            # the agent itself: no clock offset, MQTT has no broker time (see edge/clock.py)
            items.append(status_item(self.outbox, self.site_id, self.session.status_device,
                                     self.config.devices[0].kind, DeviceState.ONLINE, self.last_error, None))
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
        """One line per heartbeat: what the drivers stored so far, per device and event."""
        if self.stored:
            counts = ", ".join(f"{d} {e} {n}" for (d, e), n in sorted(self.stored.items()))
            log.info("stored since start: %s; outbox depth %d", counts, self.outbox.depth())

    # -- lifecycle
    async def run(self, flush_timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(len(self.config.devices) + 8, "edge-io"))
        capture = ErrorCapture(self.health, self.note_error)
        loggers = {name for d in self.devices for name in d.driver.loggers}
        for name in loggers:
            logging.getLogger(name).addHandler(capture)
        self.session.start()
        tasks = [asyncio.create_task(self._supervise(d), name=d.id) for d in self.devices]
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
            log.info("planned stop (%s): every device reports stopped", self.stop_reason)
            try:
                await asyncio.to_thread(self.outbox.put_batch, stopped_statuses(
                    self.devices, self.outbox, self.site_id, self.stop_reason))
            except Exception:
                log.exception("could not store the stopped statuses")
            await asyncio.to_thread(self.session.stop, flush_timeout, self.stop_reason)
            self.outbox.close()
            for name in loggers:
                logging.getLogger(name).removeHandler(capture)


async def run_agent(
    config: SiteConfig, *, stop: asyncio.Event | None = None, flush_timeout: float = 5.0,
    metrics_port: int | None = None,
) -> None:
    """Run one site until `stop` is set (or SIGINT/SIGTERM when run in the main thread)."""
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.request_stop, f"{PLANNED_STOP} ({sig.name})")
    relay = None
    if stop is not None:
        relay = asyncio.create_task(_relay(stop, agent.stop))
    try:
        with edge_metrics.endpoint(agent, metrics_port):  # /metrics, /healthz, /readyz; 0: none
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
    parser = cliutil.parser("wastestream edge run", "Run the wastestream edge agent for one site.")
    parser.add_argument("--config", required=True, help="site YAML (see edge/examples/site.yaml)")
    parser.add_argument("--metrics-port", type=int,
                        help="/metrics, /healthz, /readyz on this port (default: $WS_METRICS_PORT; 0: off)")
    cliutil.add_log_level(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"wastestream edge run: config error: {exc}", file=sys.stderr)
        return cliutil.EXIT_USAGE
    logs.bind_process(site=config.site_id)  # every record of this process is this site's
    asyncio.run(run_agent(config, metrics_port=args.metrics_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

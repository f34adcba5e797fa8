"""Smart sorting station driver: a pure tracker (snapshot -> events) and a thin Modbus poller.

The tracker turns successive register snapshots (see `registers`: any vendor profile) into contract
events: one `Deposit` per new drop, found by the drop counter and read from the drop ring, and
a `BinLevel` when a bin's fill moved by `fill_step_pct` or `heartbeat_s` passed. It keeps the
last counter it consumed; the caller may persist `cursor` and pass it back after a restart so
drops are neither repeated nor skipped. Without a cursor, the first snapshot is the baseline:
the drops already in the ring are not re-sent (they may have been sent before the restart).

The poller reads the profile's tables (one request each) every `poll_s`, over Modbus TCP or RTU, and
reconnects with exponential backoff; device and transport errors are logged with a reason and
never reach the caller. Errors raised by `emit` do propagate: swallowing them would lose drops.

`SortingStationDriver` is the kind's driver: its `StoredTracker` writes each poll's events and
the advanced cursor in one outbox transaction, so drops made while the agent was down are
caught up on restart (up to the station's ring) and none is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from contract.events import BinLevel, Deposit, Envelope, Ident, WasteCategory
from edge.devices.base import DeviceContext, DeviceSpec, Driver
from edge.devices.profiles import DEFAULT, ProfileError
from edge.devices.profiles.reader import ModbusReadError, read_image
from edge.devices.sorting_station.pseudonym import Pseudonymiser, load_key
from edge.devices.sorting_station.registers import StationMap, StationSnapshot, station_map

log = logging.getLogger(__name__)

Cursor = tuple[int, int]
"""(epoch, last consumed drop counter) of one station."""


class SortingStationConfig(DeviceSpec, frozen=True, tag="sorting_station"):
    """One station as the site config describes it (site_id is filled in from the site). Exactly
    one household key source is needed; a station without one inherits the site's."""

    kind: ClassVar[str] = "sorting_station"
    site_id: Ident
    community_id: Ident
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 502
    serial_port: str | None = None
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    unit_id: Annotated[int, msgspec.Meta(ge=1, le=247)] = 1
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    profile: str = DEFAULT
    """The station model's register map: a shipped profile's name (edge/devices/profiles/vendors/
    sorting_station/) or a path to a vendor's profile file."""
    household_key_file: str | None = None
    household_key_env: str | None = None
    fill_step_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 5.0
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0

    def __post_init__(self) -> None:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port")
        if bool(self.household_key_file) == bool(self.household_key_env):
            raise ValueError("set exactly one of household_key_file and household_key_env")
        try:
            station_map(self.profile)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None


class SortingStationTracker:
    """Pure state machine: `update(snapshot, now)` -> new events; `problems` holds this update's reasons."""

    def __init__(
        self,
        *,
        device_id: str,
        site_id: str,
        community_id: str,
        pseudonymise: Callable[[str], str],
        fill_step_pct: float = 5.0,
        heartbeat_s: float = 300.0,
        cursor: Cursor | None = None,
    ) -> None:
        self.device_id = device_id
        self.site_id = site_id
        self.community_id = community_id
        self._pseudonymise = pseudonymise
        self.fill_step_pct = fill_step_pct
        self.heartbeat_s = heartbeat_s
        self.cursor: Cursor | None = cursor
        self._levels: dict[WasteCategory, tuple[float, datetime]] = {}
        self.problems: list[str] = []
        self.missed = 0
        """Drops that were overwritten in the ring before they were read (cumulative)."""

    def update(self, snap: StationSnapshot, now: datetime) -> list[Envelope]:
        self.problems = list(snap.problems)
        if not snap.usable:
            return []
        events: list[Envelope] = [*self._new_drops(snap, now), *self._levels_due(snap, now)]
        return events

    def _new_drops(self, snap: StationSnapshot, now: datetime) -> list[Envelope]:
        if self.cursor is None:
            self.cursor = (snap.epoch, snap.counter)
            return []
        epoch, last = self.cursor
        if snap.epoch != epoch:
            self.problems.append(f"station restarted (epoch {epoch} -> {snap.epoch}); counter restarts at 0")
            last = 0
        mod = snap.counter_mod
        advanced = (snap.counter - last) % mod
        first = 1
        if advanced > snap.ring_size:
            lost = advanced - snap.ring_size
            self.missed += lost
            self.problems.append(
                f"gap: counter advanced by {advanced} since the last poll, {lost} drops were overwritten "
                f"before they could be read (seq {(last + 1) % mod}..{(last + lost) % mod})")
            first = lost + 1
        events: list[Envelope] = []
        for step in range(first, advanced + 1):
            seq = (last + step) % mod
            event = self._deposit(snap, seq, now)
            if event is not None:
                events.append(event)
        self.cursor = (snap.epoch, snap.counter)
        return events

    def _deposit(self, snap: StationSnapshot, seq: int, now: datetime) -> Deposit | None:
        slot = snap.slot_for(seq)
        if slot.seq != seq:
            self.problems.append(f"drop {seq}: its ring slot holds drop {slot.seq} (stale or torn write)")
            return None
        if slot.bin is None or slot.verdict is None or slot.source is None or slot.card is None:
            self.problems.append(slot.problem or f"drop {seq}: incomplete slot")
            return None
        return Deposit(
            msg_id="", device_id=self.device_id, site_id=self.site_id, ts=now,
            community_id=self.community_id, bin=slot.bin, kg=slot.weight_g / 1000,
            household=self._pseudonymise(slot.card), verdict=slot.verdict, verdict_source=slot.source,
        )

    def _levels_due(self, snap: StationSnapshot, now: datetime) -> list[Envelope]:
        events: list[Envelope] = []
        for state in snap.bins:
            if state.fill_pct is None:
                continue
            previous = self._levels.get(state.bin)
            if previous is not None:
                fill, at = previous
                moved = abs(state.fill_pct - fill) >= self.fill_step_pct
                if not moved and (now - at).total_seconds() < self.heartbeat_s:
                    continue
            self._levels[state.bin] = (state.fill_pct, now)
            events.append(BinLevel(
                msg_id="", device_id=self.device_id, site_id=self.site_id, ts=now,
                community_id=self.community_id, bin=state.bin, fill_pct=state.fill_pct,
            ))
        return events


Client = AsyncModbusTcpClient | AsyncModbusSerialClient


def make_client(cfg: SortingStationConfig) -> Client:
    """A pymodbus client without its own reconnect loop (we own reconnects and backoff)."""
    if cfg.transport == "tcp":
        return AsyncModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0,
                                    reconnect_delay=0, name=cfg.id)
    assert cfg.serial_port is not None
    return AsyncModbusSerialClient(cfg.serial_port, framer=FramerType.RTU, baudrate=cfg.baudrate,
                                   parity=cfg.parity, bytesize=cfg.bytesize, stopbits=cfg.stopbits,
                                   timeout=cfg.timeout_s, retries=0, reconnect_delay=0, name=cfg.id)


ReadError = ModbusReadError
"""A poll that returned no usable registers; `str()` is the reason."""


async def read_snapshot(client: Client, unit_id: int, smap: StationMap) -> StationSnapshot:
    """One poll: each table of the profile in one request (the counter and its ring in the same
    one, so they are consistent), decoded."""
    return smap.decode(await read_image(client, unit_id, smap.spans))


async def run_sorting_station(
    cfg: SortingStationConfig,
    emit: Callable[[Envelope], Awaitable[None]],
    stop: asyncio.Event,
    *,
    tracker: SortingStationTracker | None = None,
) -> None:
    """Poll one station until `stop` is set; pass `tracker` to resume from its cursor."""
    if tracker is None:
        pseudonymise = Pseudonymiser(load_key(cfg.household_key_file, cfg.household_key_env))
        tracker = SortingStationTracker(
            device_id=cfg.id, site_id=cfg.site_id, community_id=cfg.community_id,
            pseudonymise=pseudonymise, fill_step_pct=cfg.fill_step_pct, heartbeat_s=cfg.heartbeat_s)
    where = f"{cfg.host}:{cfg.port}" if cfg.transport == "tcp" else cfg.serial_port
    smap = station_map(cfg.profile)
    backoff = min(cfg.poll_s, 1.0)
    logged: set[str] = set()
    while not stop.is_set():
        client = make_client(cfg)
        try:
            if not await client.connect():
                raise ReadError(f"cannot connect to {cfg.transport} {where}")
            log.info("%s: connected (%s %s, unit %d, profile %s)", cfg.id, cfg.transport, where, cfg.unit_id,
                     smap.profile.profile)
            while not stop.is_set():
                snap = await read_snapshot(client, cfg.unit_id, smap)
                events = tracker.update(snap, datetime.now(UTC))
                logged = _log_new_problems(cfg.id, tracker.problems, logged)
                for event in events:
                    await emit(event)
                backoff = min(cfg.poll_s, 1.0)
                await _sleep_until(stop, cfg.poll_s)
        except (ReadError, ModbusException, OSError) as exc:
            log.warning("%s: %s; retrying in %.1f s", cfg.id, exc, backoff)
            await _sleep_until(stop, backoff)
            backoff = min(backoff * 2, cfg.backoff_max_s)
        finally:
            client.close()


class StoredTracker(SortingStationTracker):
    """Writes each poll's events and the advanced cursor in one `ctx.store` transaction.

    It hands the driver nothing to emit: emitting one by one would leave a window where the
    cursor and the stored deposits disagree.
    """

    def __init__(
        self, ctx: DeviceContext, cfg: SortingStationConfig, pseudonymise: Callable[[str], str]
    ) -> None:
        self.ctx, self.key = ctx, f"cursor:{cfg.id}"
        super().__init__(
            device_id=cfg.id, site_id=cfg.site_id, community_id=cfg.community_id, pseudonymise=pseudonymise,
            fill_step_pct=cfg.fill_step_pct, heartbeat_s=cfg.heartbeat_s,
            cursor=_parse_cursor(ctx.get_state(self.key)),
        )
        if self.cursor is not None:
            log.info("%s: resuming after drop %d (station epoch %d)", cfg.id, self.cursor[1], self.cursor[0])

    def update(self, snap: StationSnapshot, now: datetime) -> list[Envelope]:
        before = self.cursor
        events = super().update(snap, now)
        self.ctx.alive()
        if events or self.cursor != before:
            state = {} if self.cursor is None else {self.key: f"{self.cursor[0]}:{self.cursor[1]}"}
            try:
                self.ctx.store(events, state)
            except Exception:
                self.cursor = before  # the driver's restart re-reads these drops
                raise
        return []


def _parse_cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    epoch, counter = text.split(":")
    return int(epoch), int(counter)


class SortingStationDriver(Driver[SortingStationConfig]):
    """The sorting-station kind: an asyncio Modbus poller resuming from its stored cursor."""

    kind: ClassVar[str] = "sorting_station"
    config = SortingStationConfig
    loggers = (__name__,)

    async def run(self) -> None:
        cfg = self.cfg
        key = load_key(cfg.household_key_file, cfg.household_key_env)
        tracker = StoredTracker(self.ctx, cfg, Pseudonymiser(key))
        await run_sorting_station(cfg, self.ctx.emit, self.ctx.stop, tracker=tracker)

    def stale_after(self) -> float:
        return 3 * self.cfg.poll_s + self.cfg.timeout_s

    @classmethod
    def site_defaults(cls, raw: dict[str, Any], site: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Also the site's household key source, unless the station names its own."""
        device = super().site_defaults(raw, site, where)
        if device.get("household_key_file") or device.get("household_key_env"):
            return device
        return {**device, **{k: site[k] for k in ("household_key_file", "household_key_env") if site.get(k)}}


def _log_new_problems(device_id: str, problems: list[str], already: set[str]) -> set[str]:
    """Log each problem once while it persists, so a stuck register does not flood the log."""
    current = set(problems)
    for reason in problems:
        if reason not in already:
            log.warning("%s: %s", device_id, reason)
    return current


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

"""Smart sorting station simulator: a real pymodbus server speaking a vendor profile's map.

Each station is a `StationSim` (the PLC's register image, laid out by its profile: the reference
`wastestream-v1` unless told, plus its household traffic) served as one pymodbus `SimDevice`
(unit id = the station's `unit_id`) by a Modbus TCP server on 127.0.0.1 or a Modbus RTU server on
a pty (`firmware_sim.modbus_profile`). Several stations may share one server (an RS-485 line, or a
gateway), each under its own unit id.

Every drop is recorded in a ledger (`Drop`: station, seq, bin, grams, raw household id,
verdict) that tests and the demo compare with what arrives downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec
from pymodbus.simulator import SimDevice

from contract.events import Verdict, VerdictSource, WasteCategory
from edge.devices.profiles.fields import Image, Placed, raw
from edge.devices.profiles.station import DEFAULT_DOOR_CODES
from edge.devices.sorting_station import registers as reg
from edge.devices.sorting_station.registers import station_map
from firmware_sim.modbus_profile import ProfileImage, serve
from firmware_sim.scenario import CommunitySpec, StationSpec

log = logging.getLogger(__name__)

IncidentKind = Literal["wrong_bin", "full_bin", "out_of_range"]

BIN_MIX: dict[WasteCategory, float] = {
    WasteCategory.KITCHEN: 0.45, WasteCategory.RECYCLABLE: 0.2,
    WasteCategory.HAZARDOUS: 0.03, WasteCategory.RESIDUAL: 0.32,
}
"""Share of drops per bin, roughly what Chinese pilot communities report."""
BIN_CAPACITY_G = 60_000
"""A 240 L bin holds about 60 kg of household waste: fill % = grams in the bin / this."""
COLLECT_AT_PCT = 95.0
OUT_OF_RANGE_HOLD_S = 1.0
"""How long the `out_of_range` incident keeps the impossible fill value (150 %) in the register."""
UNCHECKED_SHARE = 0.05
"""Drops the camera could not judge (verdict unchecked, source none)."""
OnIncident = Callable[[IncidentKind, WasteCategory], None]
"""Told of a `full_bin` / `out_of_range` incident as it happens, with the bin it hit."""


class Drop(msgspec.Struct, frozen=True):
    """One simulated drop, as the ledger records it (raw household id: the sim knows the truth)."""

    station_id: str
    seq: int
    bin: WasteCategory
    grams: int
    household: str
    verdict: Verdict
    verdict_source: VerdictSource
    incident: str | None = None

    @property
    def kg(self) -> float:
        return self.grams / 1000


class StationSim:
    """One station's register image (laid out by its vendor profile) and behaviour; all mutation
    happens on the event loop."""

    def __init__(self, spec: StationSpec, community: CommunitySpec, *, seed: int,
                 household_prefix: str = "LZ", epoch: int | None = None, profile: str | None = None) -> None:
        self.spec = spec
        self.community = community
        self.map = station_map(profile or spec.profile)
        self.rng = random.Random(f"{seed}:{spec.id}")
        self.image = ProfileImage(self.map.spans, self.map.blank())
        self.categories = [b.category for b in self.map.profile.bins]
        self._write(self.map.epoch, self.rng.randrange(1, 0x10000) if epoch is None else epoch)
        # initial levels drawn in one order whatever the profile's, so a station's start is its seed's
        order = sorted(self.categories, key=lambda c: reg.BINS.index(c) if c in reg.BINS else len(reg.BINS))
        self.in_bin_g = {c: int(self.rng.uniform(0, 0.5) * BIN_CAPACITY_G) for c in order}
        self.total_g = dict.fromkeys(self.categories, 0)
        self._fill_override: dict[WasteCategory, int] = {}
        self._prefix = f"{household_prefix}-{community.id.split('-')[0].upper()}-"
        self.ledger: list[Drop] = []
        ring = self.map.profile.ring
        self._bin_code = {c: code for code, c in reversed(ring.bin.codes.items())}
        # the inverse code tables (the first code of a value wins, as a vendor's PLC would write it)
        verdicts = reversed(self.map.verdict_codes.items())
        self._verdict_code = {(v.verdict, v.source): code for code, v in verdicts}
        sources = reversed(ring.source.codes.items()) if ring.source else ()
        self._source_code = {s: code for code, s in sources}
        for category in self.categories:
            self._write_bin(category)

    @property
    def registers(self) -> list[int]:
        """The table that holds the drop counter (the reference map's whole block)."""
        return self.image.values[self.map.counter.function]

    @property
    def counter(self) -> int:
        return int(raw(self._image(), self.map.counter))

    @property
    def epoch(self) -> int:
        return int(raw(self._image(), self.map.epoch))

    def _image(self) -> Image:
        return self.map.image(self.image.values)  # type: ignore[arg-type]

    def _write(self, p: Placed, data: float | str | bool) -> None:
        self.image.write(p, data)

    def device(self) -> SimDevice:
        """The pymodbus device: reads are answered from `self.image`."""
        return self.image.device(self.spec.unit_id)

    def household(self) -> str:
        return f"{self._prefix}{self.rng.randint(1, self.community.households):06d}"[: reg.CARD_CHARS]

    def random_drop(self, incident: str | None = None) -> Drop:
        """A household drop: bin by BIN_MIX, 0.1-5 kg, the camera's verdict by `accuracy`."""
        mix = {c: w for c, w in BIN_MIX.items() if c in self.in_bin_g}
        category = self.rng.choices(list(mix), weights=list(mix.values()))[0]
        grams = round(self.rng.uniform(0.1, 5.0) * 1000)
        if incident == "wrong_bin":
            verdict, source = Verdict.INCORRECT, VerdictSource.CAMERA
        elif self.rng.random() < UNCHECKED_SHARE:
            verdict, source = Verdict.UNCHECKED, VerdictSource.NONE
        else:
            correct = self.rng.random() < self.community.accuracy
            verdict, source = (Verdict.CORRECT if correct else Verdict.INCORRECT), VerdictSource.CAMERA
        return self.drop(category, grams, self.household(), verdict, source, incident=incident)

    def drop(self, category: WasteCategory, grams: int, household: str, verdict: Verdict,
             source: VerdictSource, *, incident: str | None = None) -> Drop:
        """Record one drop: slot first, then the counter, as a PLC should."""
        seq = (self.counter + 1) % self.map.counter_mod
        reg.encode_card(household)  # refuses what no card reader would produce
        fields = self.map.slots[seq % len(self.map.slots)]
        self._write(fields["seq"], seq)
        self._write(fields["bin"], self._bin_code[category])
        self._write(fields["weight"], grams / 1000)
        if "verdict" in fields:
            if self._source_code:
                self._write(fields["verdict"], self._verdict_code[(verdict, VerdictSource.NONE)])
                self._write(fields["source"], self._source_code[source])
            else:
                self._write(fields["verdict"], self._verdict_code[(verdict, source)])
        if "card" in fields:
            self._write(fields["card"], household)
        self.in_bin_g[category] += grams
        self.total_g[category] += grams
        self._write_bin(category)
        self._write(self.map.counter, seq)
        entry = Drop(self.spec.id, seq, category, grams, household, verdict, source, incident)
        self.ledger.append(entry)
        return entry

    def fill_pct(self, category: WasteCategory) -> float:
        return min(100.0, 100.0 * self.in_bin_g[category] / BIN_CAPACITY_G)

    def set_fill(self, category: WasteCategory, pct: float) -> None:
        self.in_bin_g[category] = round(pct / 100 * BIN_CAPACITY_G)
        self._write_bin(category)

    def collect(self, category: WasteCategory) -> None:
        """A collection crew empties the bin."""
        self.set_fill(category, 0.0)

    def override_fill(self, category: WasteCategory, permille: int | None) -> None:
        """Force the level sensor's reading to `permille` / 10 % (e.g. 1500 for a faulty sensor:
        150 %, in the profile's own encoding); None restores it."""
        if permille is None:
            self._fill_override.pop(category, None)
        else:
            self._fill_override[category] = permille
        self._write_bin(category)

    def bins_to_collect(self) -> list[WasteCategory]:
        return [c for c in self.categories if self.fill_pct(c) >= COLLECT_AT_PCT]

    def _write_bin(self, category: WasteCategory) -> None:
        index = self.categories.index(category)
        fields, spec = self.map.bins[index], self.map.profile.bins[index]
        permille = self._fill_override.get(category, round(self.fill_pct(category) * 10))
        self._write(fields["fill"], permille / 10)
        if "door" in fields and spec.door is not None:
            closed = not spec.door.open_when if fields["door"].type == "bool" else next(
                code for code, name in (spec.door.codes or DEFAULT_DOOR_CODES).items() if name == "closed")
            self._write(fields["door"], closed)
        if "total" in fields:
            self._write(fields["total"], (self.total_g[category] & 0xFFFFFFFF) / 1000)


@contextlib.asynccontextmanager
async def serve_stations(sims: Sequence[StationSim], *, tcp_port: int | None = None,
                         rtu_path: str | Path | None = None, baudrate: int = 9600) -> AsyncIterator[None]:
    """Serve `sims` (distinct unit ids) on Modbus TCP 127.0.0.1:`tcp_port` or RTU at `rtu_path`."""
    async with serve([s.device() for s in sims], tcp_port=tcp_port, rtu_path=rtu_path, baudrate=baudrate):
        yield


async def run_station_sim(
    spec: StationSpec,
    community: CommunitySpec,
    *,
    tcp_port: int | None = None,
    rtu_path: str | Path | None = None,
    rate_per_min: float,
    seed: int,
    duration_s: float,
    on_drop: Callable[[Drop], None] | None = None,
    incidents: Sequence[tuple[float, IncidentKind]] = (),
    warmup_s: float = 0.0,
    cooldown_s: float = 0.0,
    collect_delay_s: float = 2.0,
    baudrate: int = 9600,
    stop: asyncio.Event | None = None,
    on_incident: OnIncident | None = None,
    profile: str | None = None,
) -> list[Drop]:
    """Serve one station and make drops for `duration_s`; return the ledger.

    Drops arrive as a Poisson process of `rate_per_min`, starting after `warmup_s` (time for a
    driver to take its baseline). `incidents` are (seconds after the warm-up, kind). A bin at
    >= 95 % is emptied `collect_delay_s` later. The server keeps answering for `cooldown_s`
    after the last drop so a poller can read it. `stop` ends the run early. `on_incident` is
    called as a `full_bin` or `out_of_range` incident happens, with the bin it hit (a `wrong_bin`
    incident is a drop: `on_drop`). `profile` (default: the spec's) is the map the station speaks.
    """
    sim = StationSim(spec, community, seed=seed, profile=profile)
    stop = stop or asyncio.Event()
    async with serve_stations([sim], tcp_port=tcp_port, rtu_path=rtu_path, baudrate=baudrate):
        await _simulate(sim, rate_per_min=rate_per_min, duration_s=duration_s, on_drop=on_drop,
                        incidents=incidents, warmup_s=warmup_s, collect_delay_s=collect_delay_s, stop=stop,
                        on_incident=on_incident)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cooldown_s)
    return sim.ledger


async def _simulate(sim: StationSim, *, rate_per_min: float, duration_s: float,
                    on_drop: Callable[[Drop], None] | None, incidents: Sequence[tuple[float, IncidentKind]],
                    warmup_s: float, collect_delay_s: float, stop: asyncio.Event,
                    on_incident: OnIncident | None = None) -> None:
    """The station's timeline: drops, incidents and collections, until `duration_s` or `stop`."""
    loop = asyncio.get_running_loop()
    if await _wait(stop, warmup_s):
        return
    start = time.monotonic()
    pending = sorted(incidents, key=lambda i: i[0])
    next_drop = sim.rng.expovariate(rate_per_min / 60.0)
    collections: dict[WasteCategory, asyncio.TimerHandle] = {}
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - start
            if elapsed >= duration_s:
                return
            if pending and pending[0][0] <= elapsed:
                _, kind = pending.pop(0)
                entry = _incident(sim, kind, loop)
                if isinstance(entry, Drop):
                    if on_drop:
                        on_drop(entry)
                elif on_incident:
                    on_incident(kind, entry)
            elif next_drop <= elapsed:
                entry = sim.random_drop()
                next_drop += sim.rng.expovariate(rate_per_min / 60.0)
                if on_drop:
                    on_drop(entry)
            for category in sim.bins_to_collect():
                if category not in collections:
                    collections[category] = loop.call_later(
                        collect_delay_s, _collect, sim, category, collections)
            wake = min([next_drop, duration_s] + [t for t, _ in pending[:1]])
            if await _wait(stop, max(0.0, wake - (time.monotonic() - start))):
                return
    finally:
        for handle in collections.values():
            handle.cancel()


def _collect(sim: StationSim, category: WasteCategory,
             pending: dict[WasteCategory, asyncio.TimerHandle]) -> None:
    sim.collect(category)
    pending.pop(category, None)


def _incident(sim: StationSim, kind: IncidentKind, loop: asyncio.AbstractEventLoop) -> Drop | WasteCategory:
    """The drop a `wrong_bin` incident makes, or the bin a `full_bin` / `out_of_range` one hits."""
    log.info("%s: incident %s", sim.spec.id, kind)
    if kind == "wrong_bin":
        return sim.random_drop(incident="wrong_bin")
    category = sim.rng.choice(sim.categories)
    if kind == "full_bin":
        sim.set_fill(category, 100.0)
    elif kind == "out_of_range":
        sim.override_fill(category, 1500)
        loop.call_later(OUT_OF_RANGE_HOLD_S, sim.override_fill, category, None)
    return category


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()

"""City-scale load: every device of city.py's model at its own report rate, as contract messages.

The devices of `CityModel.devices()` (sorting stations, truck terminals, weighbridges), each
sending what a real one sends at the rate city.py assumes, so that the offered mix is
`CityModel.peak_rates()` (the busiest minute) held for the whole run:

- a sorting station: its 4 bins' fill readings, each every `bin_report_s` (random phase);
  drops at the busiest-minute rate spread over the stations (Poisson); a heartbeat;
- a truck terminal: while driving (`truck_active_share` of the fleet) a report every
  `truck_report_s`, moving towards a waypoint inside `BBOX` at town speeds with stops, lid
  closed, bed down; a collection truck's load grows at its stops; parked trucks only beat;
- a weighbridge: inbound tickets (Poisson, `tickets_per_day` at the busy-hour rate) for the
  fleet's plates; a heartbeat;
- every device: a `device_status` (online) every `heartbeat_s`.

One seq per device across its event types (as edge/outbox.py numbers them), msg_id
`device:epoch:seq`, its own contract topic. Deterministic for a seed (`CitySchedule`, pure);
`publish_city` drives it in real time over MQTT from one OS process, and `CityLoad` runs
several (devices dealt round-robin), counting sends and acks per kind in shared memory.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import multiprocessing
import queue
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.codec import encode
from contract.events import (
    BinLevel,
    Deposit,
    DeviceState,
    DeviceStatus,
    Direction,
    Envelope,
    TruckTelemetry,
    Verdict,
    VerdictSource,
    WasteCategory,
    Weighing,
)
from contract.msgid import make_msg_id
from contract.topics import mqtt_topic
from wastestream.bench.city import CityModel
from wastestream.bench.mqttpub import DrivenPublisher

KINDS = ("deposit", "bin_level", "truck_telemetry", "weighing", "device_status")
"""The event types of the mix, in report order."""
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "deposit": ("deposit", 'count("kg")'), "bin_level": ("bin_level", 'count("fill_pct")'),
    "truck_telemetry": ("truck_position", 'count("lat")'), "weighing": ("weighing", 'count("net_kg")'),
    "device_status": ("device_status", 'count(distinct("msg_id"))'),
}
"""Kind -> (InfluxDB measurement, how to count its messages there): one point per message, except
device_status, stamped at arrival: a copy produced again (another bridge) is one more point."""

BBOX = (24.28, 109.36, 24.38, 109.46)
"""(lat_min, lon_min, lat_max, lon_max): central 柳州 (the rules' city), clear of its disposal sites."""
STATION_BINS = (WasteCategory.KITCHEN, WasteCategory.RESIDUAL, WasteCategory.RECYCLABLE,
                WasteCategory.HAZARDOUS)
BIN_WEIGHTS = (0.45, 0.35, 0.17, 0.03)
"""Share of drops per bin."""
DROP_KG = {WasteCategory.KITCHEN: (0.2, 3.0), WasteCategory.RESIDUAL: (0.2, 3.0),
           WasteCategory.RECYCLABLE: (0.1, 2.0), WasteCategory.HAZARDOUS: (0.01, 0.3)}
STATIONS_PER_COMMUNITY = 4
TRUCKS_PER_FLEET = 48
WEIGHBRIDGES_PER_FACILITY = 3
FACILITY_CATEGORIES = (WasteCategory.RESIDUAL, WasteCategory.KITCHEN, WasteCategory.CONSTRUCTION,
                       WasteCategory.RECYCLABLE)
M_PER_DEG = math.pi / 180 * 6_371_008.8
MAX_BACKLOG = 20_000
"""Unacknowledged publishes at which a publisher waits (it then falls behind schedule: reported)."""
TICK_S = 0.05
"""Shortest sleep between sends: what falls due meanwhile leaves in one burst, up to 50 ms after
its due time (`ts` is still each message's own send time). Wake-ups and writes cost this VM's
publisher most of its CPU: one city publisher (~480 msg/s) cost 184 µs per message with 10 ms
ticks and 103 with 50 ms (379 with paho's network thread)."""


@dataclass(frozen=True)
class DevicePlan:
    device: str
    site: str
    kind: str
    """Topic kind: sorting_station, truck or weighbridge."""
    index: int
    """Index within its kind (0-based): trucks below `driving` report telemetry."""


def city_plan(model: CityModel, prefix: str) -> list[DevicePlan]:
    """Every device of the city, stations first; device ids start with `prefix`."""
    n = model.devices()
    plan = [DevicePlan(f"{prefix}st{i}", f"{prefix}c{i // STATIONS_PER_COMMUNITY}", "sorting_station", i)
            for i in range(n["sorting_station"])]
    plan += [DevicePlan(f"{prefix}tr{i}", f"{prefix}fl{i // TRUCKS_PER_FLEET}", "truck", i)
             for i in range(n["truck"])]
    plan += [DevicePlan(f"{prefix}wb{i}", f"{prefix}f{i // WEIGHBRIDGES_PER_FACILITY}", "weighbridge", i)
             for i in range(n["weighbridge"])]
    return plan


def driving_trucks(model: CityModel) -> int:
    return round(model.devices()["truck"] * model.truck_active_share)


def plate(index: int) -> str:
    return f"桂BC{index:05d}"


# --- the devices ----------------------------------------------------------------------------

@dataclass
class Device:
    plan: DevicePlan
    seq: int = 0
    topics: dict[str, str] = field(default_factory=dict)

    def topic(self, event: str) -> str:
        topic = self.topics.get(event)
        if topic is None:
            topic = self.topics[event] = mqtt_topic(self.plan.site, self.plan.kind, self.plan.device, event)
        return topic

    def next_id(self, epoch: int) -> str:
        self.seq += 1
        return make_msg_id(self.plan.device, epoch, self.seq)


@dataclass
class Station(Device):
    fills: list[float] = field(default_factory=list)


@dataclass
class Truck(Device):
    lat: float = 0.0
    lon: float = 0.0
    target: tuple[float, float] = (0.0, 0.0)
    speed_kmh: float = 0.0
    heading: float = 0.0
    load_kg: float = 0.0
    capacity_kg: float = 0.0
    collection: bool = False
    last_t: float | None = None


def _point(rng: random.Random) -> tuple[float, float]:
    return rng.uniform(BBOX[0], BBOX[2]), rng.uniform(BBOX[1], BBOX[3])


def _bearing(lat: float, lon: float, to: tuple[float, float]) -> float:
    dx = (to[1] - lon) * math.cos(math.radians(lat))
    dy = to[0] - lat
    heading = math.degrees(math.atan2(dx, dy)) % 360.0
    return 0.0 if heading >= 360.0 else heading


def move_truck(truck: Truck, t: float, rng: random.Random) -> None:
    """Drive from the last report to `t` at the speed reported then, towards the waypoint; pick
    the speed reported now (a stop at a light or a bin point now and then)."""
    if truck.last_t is not None and truck.speed_kmh > 0:
        dist = truck.speed_kmh / 3.6 * (t - truck.last_t)
        while dist > 0:
            dy = (truck.target[0] - truck.lat) * M_PER_DEG
            dx = (truck.target[1] - truck.lon) * M_PER_DEG * math.cos(math.radians(truck.lat))
            left = math.hypot(dx, dy)
            if left <= dist:
                truck.lat, truck.lon = truck.target
                truck.target = _point(rng)
                dist -= left
            else:
                f = dist / left
                truck.lat += (truck.target[0] - truck.lat) * f
                truck.lon += (truck.target[1] - truck.lon) * f
                dist = 0.0
    truck.last_t = t
    if rng.random() < 0.12:
        truck.speed_kmh = 0.0
        if truck.collection:  # a bin point: the load grows
            truck.load_kg = min(truck.capacity_kg, truck.load_kg + rng.uniform(100.0, 400.0))
    else:
        base = truck.speed_kmh or rng.uniform(15.0, 30.0)
        truck.speed_kmh = round(min(55.0, max(12.0, base + rng.uniform(-8.0, 8.0))), 1)
    truck.heading = round(_bearing(truck.lat, truck.lon, truck.target), 1) % 360.0


# --- the schedule ---------------------------------------------------------------------------

Entry = tuple[float, int, int, str, int]
"""(due s, tie-break, device index, event, arg): arg is the bin of a bin_level."""


class CitySchedule:
    """The devices of publisher `part` of `parts` and when each message of theirs is due.

    Periodic streams start at a random phase within their period, so the mix is steady from
    the first second; drops and tickets are Poisson. Times are seconds from the start.
    """

    def __init__(self, model: CityModel, prefix: str, part: int = 0, parts: int = 1, *, seed: int = 1,
                 epoch: int = 1) -> None:
        self.model, self.epoch = model, epoch
        self.rng = random.Random(seed * 7919 + part)
        rates = model.peak_rates()
        counts = model.devices()
        self.deposit_rate = rates["deposit"] / max(1, counts["sorting_station"])
        self.weighing_rate = rates["weighing"] / max(1, counts["weighbridge"])
        self.plates = counts["truck"]
        driving = driving_trucks(model)
        collection = round(counts["truck"] * model.collection_trucks_per_100k
                           / (model.collection_trucks_per_100k + model.muck_trucks_per_100k))
        self.devices: list[Device] = []
        self.counts = dict.fromkeys(("sorting_station", "truck", "driving", "weighbridge"), 0)
        self._heap: list[Entry] = []
        self._n = 0
        rng = self.rng
        for g, p in enumerate(city_plan(model, prefix)):
            if g % parts != part:
                continue
            i = len(self.devices)
            self.counts[p.kind] += 1
            if p.kind == "sorting_station":
                self.devices.append(Station(p, fills=[rng.uniform(5.0, 60.0) for _ in STATION_BINS]))
                for b in range(min(model.bins_per_station, len(STATION_BINS))):
                    self._push(rng.uniform(0, model.bin_report_s), i, "bin_level", b)
                self._push(rng.expovariate(self.deposit_rate), i, "deposit")
            elif p.kind == "truck":
                is_collection = (p.index * collection) % counts["truck"] < collection  # evenly spread
                capacity = rng.uniform(5_000.0, 9_000.0) if is_collection else rng.uniform(18_000.0, 32_000.0)
                load = rng.uniform(0.0, 0.5) * capacity if is_collection else rng.choice((0.0, capacity))
                lat, lon = _point(rng)
                self.devices.append(Truck(p, lat=lat, lon=lon, target=_point(rng), load_kg=round(load),
                                          capacity_kg=capacity, collection=is_collection))
                if p.index < driving:
                    self.counts["driving"] += 1
                    self._push(rng.uniform(0, model.truck_report_s), i, "truck_telemetry")
            else:
                self.devices.append(Device(p))
                self._push(rng.expovariate(self.weighing_rate), i, "weighing")
            self._push(rng.uniform(0, model.heartbeat_s), i, "device_status")

    def _push(self, due: float, device: int, event: str, arg: int = 0) -> None:
        self._n += 1
        heapq.heappush(self._heap, (due, self._n, device, event, arg))

    def _interval(self, event: str) -> float:
        m = self.model
        if event == "deposit":
            return self.rng.expovariate(self.deposit_rate)
        if event == "weighing":
            return self.rng.expovariate(self.weighing_rate)
        return {"bin_level": m.bin_report_s, "truck_telemetry": m.truck_report_s,
                "device_status": m.heartbeat_s}[event]

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def pop_due(self, until: float) -> Entry | None:
        """The next message due at or before `until` (and its successor scheduled), or None."""
        if not self._heap or self._heap[0][0] > until:
            return None
        entry = heapq.heappop(self._heap)
        due, _, device, event, arg = entry
        self._push(due + self._interval(event), device, event, arg)
        return entry

    def message(self, entry: Entry, ts: datetime) -> tuple[str, Envelope]:
        """Build the message of a due entry (the device's next seq), stamped `ts`."""
        due, _, i, event, arg = entry
        dev, rng = self.devices[i], self.rng
        msg_id = dev.next_id(self.epoch)
        p = dev.plan
        common: dict[str, Any] = dict(msg_id=msg_id, device_id=p.device, site_id=p.site, ts=ts)
        msg: Envelope
        if event == "deposit":
            bin_ = rng.choices(STATION_BINS, BIN_WEIGHTS)[0]
            lo, hi = DROP_KG[bin_]
            r = rng.random()
            verdict, source = ((Verdict.CORRECT, VerdictSource.CAMERA) if r < 0.70 else
                               (Verdict.INCORRECT, VerdictSource.CAMERA) if r < 0.82 else
                               (Verdict.UNCHECKED, VerdictSource.NONE))
            household = ("anonymous" if rng.random() < 0.05 else hashlib.blake2b(
                f"{p.device}|{rng.randrange(self.model.households_per_station)}".encode(),
                digest_size=8).hexdigest())
            msg = Deposit(**common, community_id=p.site, bin=bin_, kg=round(rng.uniform(lo, hi), 2),
                          household=household, verdict=verdict, verdict_source=source)
        elif event == "bin_level":
            assert isinstance(dev, Station)
            fill = dev.fills[arg] + rng.uniform(0.5, 4.0)
            dev.fills[arg] = fill if fill < 97.0 else rng.uniform(2.0, 8.0)  # emptied by the round
            msg = BinLevel(**common, community_id=p.site, bin=STATION_BINS[arg],
                           fill_pct=round(dev.fills[arg], 1))
        elif event == "truck_telemetry":
            assert isinstance(dev, Truck)
            move_truck(dev, due, rng)
            msg = TruckTelemetry(**common, plate=plate(p.index), lat=round(dev.lat, 6), lon=round(dev.lon, 6),
                                 speed_kmh=dev.speed_kmh, lid_closed=True, bed_raised=False,
                                 load_kg=round(dev.load_kg), ignition=True, heading_deg=dev.heading)
        elif event == "weighing":
            tare = float(rng.randrange(11_000, 16_000, 10))
            net = float(rng.randrange(3_000, 25_000, 10))
            msg = Weighing(**common, ticket_id=f"T{p.index}-{self.epoch}-{dev.seq}",
                           plate=plate(rng.randrange(self.plates)), direction=Direction.INBOUND,
                           gross_kg=tare + net, tare_kg=tare, net_kg=net,
                           category=FACILITY_CATEGORIES[(p.index // WEIGHBRIDGES_PER_FACILITY)
                                                        % len(FACILITY_CATEGORIES)],
                           origin=f"area-{rng.randrange(12)}")
        else:
            offset = round(rng.uniform(-0.5, 0.5), 3) if p.kind == "weighbridge" else None
            msg = DeviceStatus(**common, state=DeviceState.ONLINE, clock_offset_s=offset)
        return dev.topic(event), msg

    def run(self, until: float, t0: datetime) -> Iterator[tuple[float, str, Envelope]]:
        """Every message due before `until` s, stamped `t0` + due (simulated time: for tests)."""
        while (entry := self.pop_due(until)) is not None:
            topic, msg = self.message(entry, t0 + timedelta(seconds=entry[0]))
            yield entry[0], topic, msg


# --- real time --------------------------------------------------------------------------------

@dataclass
class DriveStats:
    first_send: float = 0.0
    last_send: float = 0.0
    late_max_s: float = 0.0
    """Largest delay of a send after its due time (the generator's own lag)."""
    late_over_1s: int = 0


def drive(schedule: CitySchedule, start_at: float, duration_s: float,
          send: Callable[[str, bytes, str], None], *, backlogged: Callable[[], bool] = lambda: False,
          clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> DriveStats:
    """Send each message when due, `ts` = the moment it is built, until `duration_s` has passed."""
    stats = DriveStats()
    sleep(max(0.0, start_at - clock()))
    while True:
        now = clock()
        elapsed = now - start_at
        if elapsed >= duration_s:
            break
        while not backlogged() and (entry := schedule.pop_due(elapsed)) is not None:
            topic, msg = schedule.message(entry, datetime.now(UTC))
            send(topic, encode(msg), entry[3])
            late = clock() - start_at - entry[0]
            stats.late_max_s = max(stats.late_max_s, late)
            stats.late_over_1s += late > 1.0
            stats.last_send = clock()
            stats.first_send = stats.first_send or stats.last_send
        wait = min(schedule.next_due(), duration_s) - (clock() - start_at)
        sleep(min(0.05, max(TICK_S, wait)))
    return stats


@dataclass(frozen=True)
class CitySpec:
    """One publisher process: part `part` of `parts` of the city's devices."""

    host: str
    port: int
    prefix: str
    part: int
    parts: int
    duration_s: float
    start_at: float
    model: CityModel = field(default_factory=CityModel)
    epoch: int = 1
    seed: int = 1
    ack_timeout_s: float = 15.0


def publish_city(spec: CitySpec, counters: Any, results: Any) -> None:
    """Process entry: publish this part's messages in real time (QoS 1), then await the acks.

    `counters` (shared int64 array) gets sent and acked per kind at [part * 2K + k] and
    [part * 2K + K + k]; `results` (a queue) the summary at the end."""
    schedule = CitySchedule(spec.model, spec.prefix, spec.part, spec.parts, seed=spec.seed, epoch=spec.epoch)
    base, nk = spec.part * 2 * len(KINDS), len(KINDS)
    pending: dict[int, int] = {}  # mid -> kind index, until acked
    totals = {"sent": 0, "acked": 0}

    def on_ack(mid: int) -> None:  # from pub.pump(), on this thread: publish() has returned the mid
        kind = pending.pop(mid, None)
        if kind is not None:
            counters[base + nk + kind] += 1
            totals["acked"] += 1

    # One thread drives the client (as the bench's load generator: mqttpub.py): no network thread.
    pub = DrivenPublisher(f"bench-city-{spec.prefix}-{spec.part}", spec.host, spec.port, on_ack)

    def send(topic: str, payload: bytes, event: str) -> None:
        kind = KIND_INDEX[event]
        pending[pub.publish(topic, payload)] = kind
        counters[base + kind] += 1
        totals["sent"] += 1

    def pump_and_sleep(seconds: float) -> None:
        pub.pump()  # what the tick queued goes out; the acks that came are counted
        time.sleep(seconds)

    try:
        stats = drive(schedule, spec.start_at, spec.duration_s, send, sleep=pump_and_sleep,
                      backlogged=lambda: totals["sent"] - totals["acked"] >= MAX_BACKLOG)
        deadline = time.time() + spec.ack_timeout_s
        while totals["acked"] < totals["sent"] and time.time() < deadline:
            pub.pump(0.01)
    finally:
        pub.close()
    results.put({"part": spec.part, "devices": schedule.counts, "first_send": stats.first_send,
                 "last_send": stats.last_send, "late_max_s": stats.late_max_s,
                 "late_over_1s": stats.late_over_1s,
                 "sent": {k: int(counters[base + i]) for i, k in enumerate(KINDS)},
                 "acked": {k: int(counters[base + nk + i]) for i, k in enumerate(KINDS)}})


class CityLoad:
    """The publisher processes of a city run; `progress()` any time, `results()` at the end."""

    def __init__(self, specs: list[CitySpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.specs = specs
        self._counters = ctx.Array("q", len(specs) * 2 * len(KINDS), lock=False)
        self._results = ctx.Queue()
        self.procs = [ctx.Process(target=publish_city, args=(s, self._counters, self._results), daemon=True)
                      for s in specs]
        for proc in self.procs:
            proc.start()
        self._collected: list[dict[str, Any]] = []

    @property
    def pids(self) -> dict[str, int]:
        return {f"city-pub-{i}": p.pid for i, p in enumerate(self.procs) if p.pid is not None}

    def progress(self) -> tuple[dict[str, int], dict[str, int]]:
        """(sent, acked) per kind so far, over all publishers."""
        nk = len(KINDS)
        sent, acked = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
        for part in range(len(self.specs)):
            for i, k in enumerate(KINDS):
                sent[k] += self._counters[part * 2 * nk + i]
                acked[k] += self._counters[part * 2 * nk + nk + i]
        return sent, acked

    def done(self) -> bool:
        return not any(p.is_alive() for p in self.procs)

    def stop(self) -> None:
        """End publishers still running (after an error or an interrupt)."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    def results(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        try:
            while len(self._collected) < len(self.procs):
                try:
                    self._collected.append(self._results.get(timeout=max(0.1, deadline - time.monotonic())))
                except queue.Empty:
                    codes = [p.exitcode for p in self.procs]
                    raise RuntimeError(f"a city publisher gave no result (exit codes {codes})") from None
        finally:
            for proc in self.procs:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.terminate()
        return sorted(self._collected, key=lambda r: r["part"])


def city_specs(host: str, port: int, prefix: str, duration_s: float, procs: int, *,
               model: CityModel | None = None, start_delay_s: float = 3.0) -> list[CitySpec]:
    start_at = time.time() + start_delay_s
    return [CitySpec(host, port, prefix, i, procs, duration_s, start_at, model=model or CityModel())
            for i in range(procs)]

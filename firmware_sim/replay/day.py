"""One whole local day of a city's device traffic at its real scale, as contract events (pure).

Why: weighings are few (柳州's ~2,740 t/d of household waste is a few hundred truck tickets a
day), so a demo minute cannot show what the report judges: whole local days. `plan_day` makes
the day an edge outbox would hold after an outage of that day:

- **weighbridges**: every facility of the scenario that has weighbridges receives tickets until
  its day's intake is `LOAD_FRACTION` (± 3 %) of its design capacity (`capacity_t_per_day`):
  loads near capacity, never over it (no `over_capacity`). The fleet is the scenario's vehicles,
  each as the model of as many same-sized trucks as keep a truck at about `TRIPS_PER_TRUCK` trips
  a day (plates derived from its plate); a load is 60-95 % of the truck's rated payload, gross
  rounded to the weighbridge's division, tare the registered one; arrival times follow
  `WEIGHBRIDGE_HOURS` (collection rounds, morning and afternoon peaks).
- **sorting stations**: `PARTICIPATION` of each community's households drop waste (each at
  least once), `DROPS_PER_HOUSEHOLD` times on average, at the community's stations, mostly at
  the fixed hours of `STATION_HOURS` (定时定点); bin shares and drop weights as in
  wastestream/bench/citygen.py; the camera's verdict right for the community's `accuracy` share
  of drops, the wrong ones spread evenly (a run of them early in the day is no low-accuracy
  day); each bin's fill is reported when it moves `FILL_STEP_PCT` or every `FILL_HEARTBEAT_S`,
  and the bin is emptied once it reaches `EMPTY_AT_PCT` (below the rules' bin_full_pct: a
  normal day raises no bin_full).
- **muck trucks**: each scenario truck makes `MUCK_TRIPS` round trips between 08:00 and 18:00:
  loaded at its origin (lid open while standing), out along its route with the lid closed,
  unloaded inside its disposal site, back empty; reported every `truck_report_interval_s` and
  on every lid/bed/ignition change, parked (ignition off) between trips.

No incidents: the scenario's incidents are the live run's; a replayed normal day must raise
no alert. Deterministic for (scenario seed, day): the same day replayed twice is the same
events, so with the msg_ids of firmware_sim/replay/backlog.py it is counted once.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contract.events import (
    BinLevel,
    Deposit,
    Direction,
    Envelope,
    TareSource,
    TruckTelemetry,
    Verdict,
    VerdictSource,
    WasteCategory,
    Weighing,
)
from firmware_sim.scenario import CommunitySpec, FacilitySpec, Scenario, TruckSpec, VehicleSpec
from firmware_sim.truck import DUMP_S, STOP_S, Polyline

LOAD_FRACTION = 0.87
"""A facility's day's intake as a share of its design capacity (headroom for a live demo run the same
local day: the day must not go over capacity)."""
TRIPS_PER_TRUCK = 4
PAYLOAD_SHARE = (0.6, 0.95)
WEIGHBRIDGE_HOURS = (0.2, 0.1, 0.1, 0.1, 0.3, 1.0, 2.0, 2.5, 2.5, 2.0, 1.5, 1.0,
                     0.8, 0.8, 1.2, 1.8, 2.0, 2.0, 1.5, 1.0, 0.6, 0.4, 0.3, 0.2)
"""Relative arrivals per local hour at a weighbridge."""

PARTICIPATION = 0.75
DROPS_PER_HOUSEHOLD = 1.2
STATION_HOURS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 1.5, 3.0, 2.5, 1.0, 0.4, 0.3,
                 0.3, 0.3, 0.3, 0.4, 0.6, 1.2, 3.0, 3.0, 2.0, 0.8, 0.2, 0.0)
"""Relative drops per local hour at a station (fixed hours morning and evening)."""
BIN_SHARES = {WasteCategory.KITCHEN: 0.45, WasteCategory.RESIDUAL: 0.35, WasteCategory.RECYCLABLE: 0.17,
              WasteCategory.HAZARDOUS: 0.03}
DROP_KG = {WasteCategory.KITCHEN: (0.2, 3.0), WasteCategory.RESIDUAL: (0.2, 3.0),
           WasteCategory.RECYCLABLE: (0.1, 2.0), WasteCategory.HAZARDOUS: (0.01, 0.3)}
BIN_CAPACITY_KG = {WasteCategory.KITCHEN: 200.0, WasteCategory.RESIDUAL: 200.0,
                   WasteCategory.RECYCLABLE: 120.0, WasteCategory.HAZARDOUS: 20.0}
FILL_STEP_PCT = 5.0
FILL_HEARTBEAT_S = 1800.0
EMPTY_AT_PCT = 70.0
EMPTY_AFTER_S = 600.0
"""A bin at EMPTY_AT_PCT is emptied this long after (the cleaner's round)."""

MUCK_TRIPS = 8
MUCK_HOURS = (8.0, 18.0)
LOAD_AT_ORIGIN_S = 600.0
PARKED_REPORT_S = 600.0
LOAD_STEP_KG = 500.0
"""The terminal reports a load change larger than this at once (edge/devices/truck/terminal.py)."""


@dataclass(frozen=True)
class Item:
    """One event of the day for one device of one site (msg_id left empty: backlog.py numbers it)."""

    site_id: str
    kind: str
    event: Envelope

    @property
    def device_id(self) -> str:
        return self.event.device_id


@dataclass
class DayPlan:
    """The day's events, per site in time order, and what they add up to."""

    day: date
    tz: str
    start: datetime
    end: datetime
    items: list[Item] = field(default_factory=list)

    def of(self, event_type: type[Envelope]) -> list[Envelope]:
        return [i.event for i in self.items if isinstance(i.event, event_type)]

    def tonnage_kg(self) -> dict[str, float]:
        """site -> net kg of its tickets."""
        out: dict[str, float] = {}
        for w in self.of(Weighing):
            assert isinstance(w, Weighing)
            out[w.site_id] = out.get(w.site_id, 0.0) + w.net_kg
        return out

    def tickets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.of(Weighing):
            out[w.site_id] = out.get(w.site_id, 0) + 1
        return out


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the local day `day` in `tz`, in UTC."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def yesterday(tz: str, now: datetime | None = None) -> date:
    """The local day before today's in `tz`."""
    return ((now or datetime.now(UTC)).astimezone(ZoneInfo(tz)) - timedelta(days=1)).date()


def plan_day(scenario: Scenario, day: date, tz: str,
             pseudonymise: Callable[[str], str] | None = None) -> DayPlan:
    """Every event of `day` (local in `tz`); `pseudonymise` turns a raw household id into what the
    edge sends (edge/devices/sorting_station/pseudonym.py), by default a hash-free stand-in."""
    start, end = day_bounds(day, tz)
    plan = DayPlan(day, tz, start, end)
    rng = random.Random(f"{scenario.seed}:{day.isoformat()}")
    for facility in scenario.weighbridge_sites():
        plan.items += _facility_day(scenario, facility, start, end, random.Random(rng.random()))
    pseudo = pseudonymise or _stand_in
    for community in scenario.station_sites():
        plan.items += _community_day(community, start, end, random.Random(rng.random()), pseudo)
    for truck in scenario.trucks:
        plan.items += _truck_day(scenario, truck, start, random.Random(rng.random()))
    plan.items.sort(key=lambda i: (i.site_id, i.event.ts))
    return plan


def _stand_in(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _times(rng: random.Random, n: int, hours: tuple[float, ...], start: datetime,
           end: datetime) -> list[datetime]:
    """`n` instants of the local day [start, end) drawn from the hourly profile `hours`, sorted."""
    span = (end - start).total_seconds()  # 23 or 25 h on a DST day: hours scale to fit
    out = []
    for _ in range(n):
        hour = rng.choices(range(24), weights=hours)[0]
        offset = (hour + rng.random()) / 24 * span
        out.append(start + timedelta(seconds=min(offset, span - 1)))
    return sorted(out)


# --- weighbridges --------------------------------------------------------------------------------

def _fleet(scenario: Scenario, facility: FacilitySpec, trips: int) -> list[VehicleSpec]:
    """The facility's trucks: each scenario vehicle as the model of `k` same-sized trucks."""
    models = scenario.vehicles_for(facility)
    per_model = max(1, math.ceil(trips / TRIPS_PER_TRUCK / len(models)))
    taken = {v.plate for v in scenario.vehicles}
    fleet: list[VehicleSpec] = []
    for model in models:
        fleet.append(model)
        prefix = model.plate.rstrip("0123456789")
        width = max(3, len(model.plate) - len(prefix))
        number, k, made = int(model.plate[len(prefix):] or 0), 0, 1
        while made < per_model:
            k += 1
            plate = f"{prefix}{(number + 7 * k) % 10 ** width:0{width}d}"
            if plate not in taken:
                taken.add(plate)
                made += 1
                fleet.append(VehicleSpec(plate=plate, tare_kg=model.tare_kg,
                                         rated_gross_kg=model.rated_gross_kg, category=model.category,
                                         origin=model.origin))
    return fleet


def _facility_day(scenario: Scenario, facility: FacilitySpec, start: datetime, end: datetime,
                  rng: random.Random) -> list[Item]:
    target_kg = facility.capacity_t_per_day * 1000 * LOAD_FRACTION * rng.uniform(0.97, 1.03)
    models = scenario.vehicles_for(facility)
    mean_net = sum((v.rated_gross_kg - v.tare_kg) * sum(PAYLOAD_SHARE) / 2 for v in models) / len(models)
    fleet = _fleet(scenario, facility, math.ceil(target_kg / mean_net))
    loads: list[tuple[VehicleSpec, float]] = []
    total = 0.0
    while total < target_kg:
        vehicle = rng.choice(fleet)
        net = (vehicle.rated_gross_kg - vehicle.tare_kg) * rng.uniform(*PAYLOAD_SHARE)
        loads.append((vehicle, net))
        total += net
    bridges = facility.weighbridges
    items = []
    for n, (ts, (vehicle, net)) in enumerate(zip(_times(rng, len(loads), WEIGHBRIDGE_HOURS, start, end),
                                                 loads, strict=True), 1):
        bridge = bridges[n % len(bridges)]
        division = bridge.division_kg
        gross = round((vehicle.tare_kg + net) / division) * division
        tare = float(vehicle.tare_kg)
        items.append(Item(facility.id, "weighbridge", Weighing(
            msg_id="", device_id=bridge.id, site_id=facility.id, ts=ts.replace(microsecond=0),
            ticket_id=f"{bridge.id}-{ts.strftime('%Y%m%d')}-{n:04d}", plate=vehicle.plate,
            direction=Direction.INBOUND, gross_kg=float(gross), tare_kg=tare, net_kg=float(gross) - tare,
            category=vehicle.category, origin=vehicle.origin, tare_source=TareSource.REGISTERED)))
    return items


# --- sorting stations ----------------------------------------------------------------------------

def _community_day(community: CommunitySpec, start: datetime, end: datetime, rng: random.Random,
                   pseudonymise: Callable[[str], str]) -> list[Item]:
    prefix = f"LZ-{community.id.split('-')[0].upper()}-"
    households = rng.sample(range(1, community.households + 1), round(community.households * PARTICIPATION))
    drops = round(len(households) * DROPS_PER_HOUSEHOLD)
    # every participating household drops at least once (participation is PARTICIPATION), some twice
    droppers = households + rng.choices(households, k=drops - len(households))
    rng.shuffle(droppers)
    who = iter(droppers)
    items: list[Item] = []
    stations = community.stations
    times = _times(rng, drops, STATION_HOURS, start, end)
    per_station: dict[str, list[datetime]] = {s.id: [] for s in stations}
    for i, ts in enumerate(times):
        per_station[stations[i % len(stations)].id].append(ts)
    for station_id, station_times in per_station.items():
        items += _station_day(community, station_id, station_times, rng,
                              lambda: pseudonymise(f"{prefix}{next(who):06d}"))
    return items


def _station_day(community: CommunitySpec, station_id: str, times: list[datetime], rng: random.Random,
                 household: Callable[[], str]) -> list[Item]:
    bins = list(BIN_SHARES)
    fill = dict.fromkeys(bins, 0.0)  # kg in each bin
    wrong_share, phase = 1.0 - community.accuracy, rng.random()
    reported: dict[WasteCategory, tuple[float, datetime]] = {}
    empty_at: dict[WasteCategory, datetime] = {}
    items: list[Item] = []

    def level(b: WasteCategory, ts: datetime, force: bool = False) -> None:
        pct = round(min(100.0, 100 * fill[b] / BIN_CAPACITY_KG[b]), 1)
        last = reported.get(b)
        if force or last is None or abs(pct - last[0]) >= FILL_STEP_PCT or (
                ts - last[1]).total_seconds() >= FILL_HEARTBEAT_S:
            reported[b] = (pct, ts)
            items.append(Item(community.id, "sorting_station", BinLevel(
                msg_id="", device_id=station_id, site_id=community.id, ts=ts, community_id=community.id,
                bin=b, fill_pct=pct)))

    for drops, at in enumerate(times):
        ts = at.replace(microsecond=0)
        for b, when in list(empty_at.items()):
            if when <= ts:
                fill[b] = 0.0
                del empty_at[b]
                level(b, when, force=True)
        b = rng.choices(bins, weights=[BIN_SHARES[x] for x in bins])[0]
        kg = round(rng.uniform(*DROP_KG[b]), 3)
        # wrong drops spread evenly (not in runs): the running accuracy stays at the community's
        right = math.floor((drops + 1) * wrong_share + phase) == math.floor(drops * wrong_share + phase)
        items.append(Item(community.id, "sorting_station", Deposit(
            msg_id="", device_id=station_id, site_id=community.id, ts=ts, community_id=community.id,
            bin=b, kg=kg, household=household(), verdict=Verdict.CORRECT if right else Verdict.INCORRECT,
            verdict_source=VerdictSource.CAMERA)))
        fill[b] += kg
        level(b, ts)
        if 100 * fill[b] / BIN_CAPACITY_KG[b] >= EMPTY_AT_PCT and b not in empty_at:
            empty_at[b] = ts + timedelta(seconds=EMPTY_AFTER_S)
    return items


# --- muck trucks ---------------------------------------------------------------------------------

@dataclass
class _Tick:
    lat: float
    lon: float
    speed_kmh: float
    heading: float
    lid_closed: bool
    bed_raised: bool
    load_kg: float
    ignition: bool


def _round_trip(spec: TruckSpec, rng: random.Random) -> Iterator[_Tick]:
    """One round trip, one tick per second: load at the origin, out, unload, back, park."""
    route = [(p.lat, p.lon) for p in spec.route]
    out, back = Polyline(route), Polyline(route[::-1])
    lat, lon = route[0]
    head = out.at(min(1.0, out.length))[2]
    steps = int(LOAD_AT_ORIGIN_S)
    for i in range(steps):  # loading, standing, lid open; closed once full
        yield _Tick(lat, lon, 0.0, head, i == steps - 1, False, spec.load_kg * (i + 1) / steps, True)
    load = float(spec.load_kg)
    for polyline, loaded in ((out, True), (back, False)):
        d = 0.0
        while d < polyline.length:
            speed = max(5.0, spec.speed_kmh + rng.uniform(-2.0, 2.0))
            d = min(d + speed / 3.6, polyline.length)
            lat, lon, head = polyline.at(d)
            yield _Tick(lat, lon, speed, head, True, False, load, True)
        if loaded:  # unload inside the disposal site
            residual = rng.uniform(0.0, 80.0)
            for _ in range(STOP_S):
                yield _Tick(lat, lon, 0.0, head, True, False, load, True)
            for i in range(DUMP_S):
                left = load + (residual - load) * (i + 1) / DUMP_S
                yield _Tick(lat, lon, 0.0, head, True, True, left, True)
            load = residual
            for _ in range(STOP_S):
                yield _Tick(lat, lon, 0.0, head, True, False, load, True)
    yield _Tick(lat, lon, 0.0, head, True, False, load, False)  # parked: ignition off


def _truck_day(scenario: Scenario, spec: TruckSpec, start: datetime, rng: random.Random) -> list[Item]:
    site = f"fleet-{spec.origin}"
    interval = scenario.rates.truck_report_interval_s
    first, last = MUCK_HOURS
    gap = (last - first) * 3600 / MUCK_TRIPS
    items: list[Item] = []
    prev: _Tick | None = None
    prev_at = -math.inf

    def report(t: _Tick, at: float) -> None:
        nonlocal prev, prev_at
        items.append(Item(site, "truck", TruckTelemetry(
            msg_id="", device_id=spec.id, site_id=site,
            ts=(start + timedelta(seconds=at)).replace(microsecond=0), plate=spec.plate,
            lat=round(t.lat, 6), lon=round(t.lon, 6), speed_kmh=round(t.speed_kmh, 1),
            lid_closed=t.lid_closed, bed_raised=t.bed_raised, load_kg=round(t.load_kg, 1),
            ignition=t.ignition, heading_deg=round(t.heading, 1) % 360.0)))
        prev, prev_at = t, at

    for trip in range(MUCK_TRIPS):
        at = first * 3600 + trip * gap + rng.uniform(0, gap / 4)
        if prev is not None:  # parked since the last trip: a report now and then
            while at - prev_at > PARKED_REPORT_S:
                report(prev, prev_at + PARKED_REPORT_S)
        tick: _Tick | None = None
        for tick in _round_trip(spec, rng):
            changed = prev is None or (tick.lid_closed, tick.bed_raised, tick.ignition) != (
                prev.lid_closed, prev.bed_raised, prev.ignition) or abs(
                tick.load_kg - prev.load_kg) > LOAD_STEP_KG
            if changed or at - prev_at >= interval:
                report(tick, at)
            at += 1.0
        if tick is not None and prev is not tick:
            report(tick, at - 1.0)  # the trip's last tick (parked) is always said
    return items

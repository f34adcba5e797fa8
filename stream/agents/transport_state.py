"""Illegal dumping, uncovered transport, route/hours, stuck GPS and the sealed-transport rate (pure).

One `TruckState` per truck terminal (the Kafka key of ws.truck-telemetry) holds the
de-duplication mark AND every running episode, so one changelog record carries both
(stream/dedup.py). `step()` takes a report and returns what it raises: alerts, manifest
events for stream/agents/manifest.py, InfluxDB points. No I/O, no clocks: event time only.

Rules, and why they are shaped so:
- **Dump episode**: opens on a report with the bed raised or with the load more than
  `load_drop_kg` below its running peak (the terminal reports a gradual unload in
  `load_step_kg` steps, so a per-pair drop would miss it); it stays open while the bed is
  up or the load keeps falling, and raises at most ONE `illegal_dumping` (dedup key = site/device
  + the msg_id that opened it). It is judged at the first report of the episode with a GPS
  fix: outside every disposal site -> illegal; inside -> a legal unload, which is a manifest
  arrival. A dump that starts during a GPS loss is judged at the first fix after it (a
  dumping truck stands still; the summary says the position came after a loss).
- **Uncovered**: lid open while moving (fix and speed >= moving_kmh), continuously for
  strictly more than `uncovered_min_s` of event time; ended by a lid-closed report (end =
  that report: lid changes are reported at once) or a stop (end = the last moving report).
  Reports without a fix neither start nor end it (their speed is stale).
- **Route/hours**: driving (ignition, fix, moving) outside the permit's local hours or more
  than `corridor_tolerance_m` from its corridor; one alert per episode, which ends on a
  compliant driving report or ignition off. Trucks without a permit in the rules and
  reports without a fix are not judged.
- **Stuck GPS**: the same position (exactly) on `stuck_after_readings` consecutive reports
  that say the truck is moving. (A constant load while driving is normal, so load is not
  used.)
- **Sealed rate**: distance between consecutive fixes, equirectangular (error < 0.1 % at
  the few hundred metres between reports), attributed to the state at the segment's start;
  sealed = loaded and the lid closed at the start and on every report (with or without fix)
  in between. Segments implying more than `MAX_PLAUSIBLE_KMH` are GPS jumps and skipped.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import Polygon

from contract.events import Alert, TruckTelemetry
from contract.msgid import MsgKey, device_key, site_msg_id
from stream.agents import seen
from stream.alerting.make import make_alert
from stream.rules import Geofence, Rules, TruckPermit
from stream.sinks.line_protocol import Point, to_ns

EARTH_RADIUS_M = 6_371_008.8
MAX_PLAUSIBLE_KMH = 150.0
LOAD_NOISE_KG = 50.0
"""A load falling by less than this between reports is noise, not unloading."""
KEEP_DAYS = 3
"""Local days of sealed-rate totals kept per truck: late reports up to this old still count."""
EVIDENCE = 20

TRUCK_POSITION = "truck_position"
TRANSPORT_DAILY = "transport_daily"


class Fix(msgspec.Struct):
    msg_id: str
    ts_ns: int
    lat: float
    lon: float


class Episode(msgspec.Struct):
    start: str
    """msg_id of the report that opened it: the alert's dedup key."""
    start_ns: int
    evidence: list[str] = []
    open: bool = True
    verdict: Literal["legal", "illegal"] | None = None
    alerted: bool = False
    peak_kg: float = 0.0
    last_ns: int = 0
    saw_no_fix: bool = False
    count: int = 0


class TruckState(msgspec.Struct):
    mark: dict[str, Any] = {}
    recent: list[str] = []
    prev_load_kg: float | None = None
    peak_kg: float = 0.0
    last_fix: Fix | None = None
    seg_loaded: bool = False
    seg_sealed: bool = True
    dump: Episode | None = None
    uncovered: Episode | None = None
    route: Episode | None = None
    stuck: Episode | None = None
    empty: bool = True
    """No load since the last trip (or ever): the next loaded departure starts a manifest trip."""
    days: dict[str, list[float]] = {}
    """Local-day start (ns, as str) -> [loaded_m, sealed_m]."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TruckState:
        return msgspec.convert(data, cls) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class Output(msgspec.Struct):
    duplicate: bool = False
    alerts: list[Alert] = []
    manifest_events: list[dict[str, Any]] = []
    points: list[Point] = []


def _truck(t: TruckTelemetry) -> str:
    """The truck in alert dedup keys: `site/device` (device ids are unique within a site only)."""
    return device_key(t.site_id, t.device_id)


def step(state: TruckState, t: TruckTelemetry, key: MsgKey, rules: Rules) -> Output:
    """Apply one report to `state` (mutated); a duplicate changes nothing and yields only its points."""
    out = Output()
    if not seen.accept(state.mark, key):
        out.duplicate = True
        out.points.append(position_point(t))
        return out
    state.recent = [*state.recent, t.msg_id][-5:]
    ts_ns = to_ns(t.ts)
    _dumping(state, t, ts_ns, rules, out)
    _uncovered(state, t, ts_ns, rules, out)
    _route(state, t, ts_ns, rules, out)
    _stuck(state, t, ts_ns, rules, out)
    _trip(state, t, ts_ns, rules, out)
    _distance(state, t, ts_ns, rules)
    state.prev_load_kg = t.load_kg
    out.points.append(position_point(t))
    out.points.append(daily_point(state, t, rules))
    return out


# ------------------------------------------------------------------------------ dumping


def _dumping(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules, out: Output) -> None:
    prev = state.prev_load_kg
    falling = prev is not None and t.load_kg < prev - LOAD_NOISE_KG
    state.peak_kg = max(state.peak_kg, t.load_kg)
    dropped = state.peak_kg - t.load_kg > rules.transport.load_drop_kg
    trigger = t.bed_raised or dropped
    ep = state.dump
    if ep is not None and not ep.open and ep.verdict is not None:
        ep = state.dump = None
    if ep is None and trigger:
        ep = state.dump = Episode(start=t.msg_id, start_ns=ts_ns, evidence=state.recent[-3:-1],
                                  peak_kg=state.peak_kg)
    if ep is None:
        return
    if t.bed_raised or falling:
        ep.open = True  # a pending (closed, unjudged) episode that starts again
    ep.evidence = [*ep.evidence, t.msg_id][-EVIDENCE:]
    ep.saw_no_fix = ep.saw_no_fix or not t.gps_fix
    if ep.verdict is None and t.gps_fix:
        site = rules.inside_disposal_site(t.lat, t.lon)
        if site is None:
            ep.verdict = "illegal"
            how = "bed raised" if t.bed_raised else f"load fell {ep.peak_kg - t.load_kg:.0f} kg"
            after = " (position from the first fix after a GPS loss)" if ep.saw_no_fix else ""
            out.alerts.append(make_alert(
                "illegal_dumping", site_id=t.site_id, device_id=t.device_id,
                subject=t.plate, summary=f"{t.plate}: {how} outside every approved disposal site{after}",
                evidence=ep.evidence, ts=t.ts, dedup_key=f"{_truck(t)}|{ep.start}", lat=t.lat, lon=t.lon))
        else:
            ep.verdict = "legal"
            out.manifest_events.append(manifest_event(
                "arrival", t, kg=ep.peak_kg, place=site,
                event_id=f"unload:{site_msg_id(t.site_id, ep.start)}"))
    if ep.open and not t.bed_raised and not falling and ep.start != t.msg_id:
        ep.open = False
        state.peak_kg = t.load_kg  # the next episode is measured from what is left


# ---------------------------------------------------------------------------- uncovered


def _uncovered(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules, out: Output) -> None:
    moving = t.gps_fix and t.speed_kmh >= rules.transport.moving_kmh
    ep = state.uncovered
    limit_ns = round(rules.transport.uncovered_min_s * 1e9)
    if not t.lid_closed and (moving or (ep is not None and not t.gps_fix)):
        if ep is None:
            ep = state.uncovered = Episode(start=t.msg_id, start_ns=ts_ns)
        ep.evidence = [*ep.evidence, t.msg_id][-EVIDENCE:]
        ep.last_ns = ts_ns
        if not ep.alerted and ts_ns - ep.start_ns > limit_ns:
            _raise_uncovered(ep, t, ts_ns, out)
        return
    if ep is not None:
        end_ns = ts_ns if t.lid_closed else ep.last_ns  # lid changes are reported at once; stops are not
        if not ep.alerted and end_ns - ep.start_ns > limit_ns:
            if t.lid_closed:
                ep.evidence = [*ep.evidence, t.msg_id][-EVIDENCE:]
            _raise_uncovered(ep, t, end_ns, out)
        state.uncovered = None


def _raise_uncovered(ep: Episode, t: TruckTelemetry, end_ns: int, out: Output) -> None:
    ep.alerted = True
    out.alerts.append(make_alert(
        "uncovered_transport", site_id=t.site_id, device_id=t.device_id, subject=t.plate,
        summary=f"{t.plate}: lid open while moving for {(end_ns - ep.start_ns) / 1e9:.0f} s",
        evidence=ep.evidence, ts=t.ts, dedup_key=f"{_truck(t)}|{ep.start}", lat=t.lat, lon=t.lon))


# ------------------------------------------------------------------------- route / hours


def permit_for(rules: Rules, plate: str) -> TruckPermit | None:
    return next((p for p in rules.trucks if p.plate == plate), None)


def within_hours(hours: tuple[int, int], local: datetime) -> bool:
    """[start, end) in local hours; start > end wraps midnight (e.g. night-only permits 22-6)."""
    start, end = hours
    h = local.hour + local.minute / 60 + local.second / 3600
    return start <= h < end if start <= end else (h >= start or h < end)


def _route(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules, out: Output) -> None:
    permit = permit_for(rules, t.plate)
    if permit is None or not t.gps_fix:
        return
    if not t.ignition:
        state.route = None
        return
    if t.speed_kmh < rules.transport.moving_kmh:
        return  # standing (a red light): the episode neither ends nor starts
    reasons = []
    local = t.ts.astimezone(_zone(rules.timezone))
    if not within_hours(permit.hours, local):
        start, end = permit.hours
        reasons.append(f"driving at {local:%H:%M} outside permitted hours {start}-{end}")
    corridor = next((c for c in rules.corridors if c.id == permit.corridor), None)
    if corridor is not None:
        off = corridor_distance_m(corridor, t.lat, t.lon)
        if off > rules.transport.corridor_tolerance_m:
            reasons.append(f"{off:.0f} m outside corridor {corridor.id}")
    if not reasons:
        state.route = None
        return
    if state.route is None:
        state.route = Episode(start=t.msg_id, start_ns=ts_ns, alerted=True)
        out.alerts.append(make_alert(
            "route_or_hours_violation", site_id=t.site_id, device_id=t.device_id,
            subject=t.plate, summary=f"{t.plate}: " + "; ".join(reasons), evidence=[t.msg_id], ts=t.ts,
            dedup_key=f"{_truck(t)}|{t.msg_id}", lat=t.lat, lon=t.lon))


def corridor_distance_m(fence: Geofence, lat: float, lon: float) -> float:
    """Metres from the point to the corridor polygon (0 inside), in a local equirectangular plane."""
    kx = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat))
    ky = math.radians(1) * EARTH_RADIUS_M
    poly = Polygon([((plon - lon) * kx, (plat - lat) * ky) for plat, plon in fence.polygon])
    return float(poly.distance(ShapelyPoint(0.0, 0.0)))


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# ---------------------------------------------------------------------------- stuck GPS


def _stuck(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules, out: Output) -> None:
    if not (t.gps_fix and t.speed_kmh >= rules.transport.moving_kmh):
        return  # only moving reports count; standing still at one position is normal
    last = state.last_fix  # the previous fix: _distance() moves it on after this
    ep = state.stuck
    if ep is None or last is None or (last.lat, last.lon) != (t.lat, t.lon):
        state.stuck = Episode(start=t.msg_id, start_ns=ts_ns, evidence=[t.msg_id], count=1)
        return
    ep.evidence = [*ep.evidence, t.msg_id][-EVIDENCE:]
    ep.count += 1
    if not ep.alerted and ep.count >= rules.device_health.stuck_after_readings:
        ep.alerted = True
        out.alerts.append(make_alert(
            "stuck_sensor", site_id=t.site_id, device_id=t.device_id, subject=t.plate,
            summary=f"{t.plate}: GPS position unchanged over {ep.count} reports while moving "
                    f"at {t.speed_kmh:.0f} km/h", evidence=ep.evidence, ts=t.ts,
            dedup_key=f"{_truck(t)}|gps|{ep.start}", lat=t.lat, lon=t.lon))


# ------------------------------------------------------------------------ manifest trips


def manifest_event(kind: Literal["departure", "arrival"], t: TruckTelemetry, *, kg: float, place: str,
                   event_id: str) -> dict[str, Any]:
    """A manifest event from the truck's own load sensor (see stream/agents/manifest_state.py)."""
    return {"type": kind, "id": event_id, "plate": t.plate, "ts_ns": to_ns(t.ts), "kg": kg, "place": place,
            "source": "truck", "device": t.device_id, "site": t.site_id, "msg_id": t.msg_id}


def _trip(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules, out: Output) -> None:
    """Departure = the first report driving away loaded after being empty (or first seen)."""
    tr = rules.transport
    if t.load_kg <= tr.loaded_kg:
        state.empty = True
        return
    if state.empty and t.ignition and t.speed_kmh >= tr.moving_kmh:
        state.empty = False
        out.manifest_events.append(manifest_event(
            "departure", t, kg=t.load_kg, place=t.site_id,
            event_id=f"depart:{site_msg_id(t.site_id, t.msg_id)}"))


# ------------------------------------------------------------------------- sealed rate


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough between consecutive reports, and cheap."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return EARTH_RADIUS_M * math.hypot(x, y)


def local_day_start(ts: datetime, tz: str) -> datetime:
    local = ts.astimezone(_zone(tz))
    return datetime(local.year, local.month, local.day, tzinfo=_zone(tz))


def _distance(state: TruckState, t: TruckTelemetry, ts_ns: int, rules: Rules) -> None:
    if not t.gps_fix:
        state.seg_sealed = state.seg_sealed and t.lid_closed  # a lid opened in a GPS gap unseals the gap
        return
    last = state.last_fix
    if last is not None and ts_ns > last.ts_ns:
        d = distance_m(last.lat, last.lon, t.lat, t.lon)
        if d / ((ts_ns - last.ts_ns) / 1e9) * 3.6 <= MAX_PLAUSIBLE_KMH and state.seg_loaded:
            day = str(to_ns(local_day_start(t.ts, rules.timezone)))
            loaded_m, sealed_m = state.days.get(day, [0.0, 0.0])
            state.days[day] = [loaded_m + d, sealed_m + (d if state.seg_sealed else 0.0)]
            newest = max(int(k) for k in state.days)
            floor = newest - KEEP_DAYS * 86_400 * 1_000_000_000
            state.days = {k: v for k, v in state.days.items() if int(k) > floor}
    if last is None or ts_ns > last.ts_ns:
        state.last_fix = Fix(t.msg_id, ts_ns, t.lat, t.lon)
        state.seg_loaded = t.load_kg > rules.transport.loaded_kg
        state.seg_sealed = t.lid_closed


# ------------------------------------------------------------------------------ points


def position_point(t: TruckTelemetry) -> Point:
    """One per report for the geomap; plate and msg_id are fields (SCHEMA.md: plates are not tags)."""
    return Point(TRUCK_POSITION, {"site": t.site_id, "device": t.device_id}, {
        "lat": t.lat, "lon": t.lon, "speed": float(t.speed_kmh), "lid_closed": t.lid_closed,
        "bed_raised": t.bed_raised, "load_kg": float(t.load_kg), "ignition": t.ignition, "gps_fix": t.gps_fix,
        "plate": t.plate, "msg_id": t.msg_id}, to_ns(t.ts))


def daily_point(state: TruckState, t: TruckTelemetry, rules: Rules) -> Point:
    """The truck's running sealed-rate totals for the report's local day (overwritten as it grows)."""
    day = local_day_start(t.ts, rules.timezone)
    loaded_m, sealed_m = state.days.get(str(to_ns(day)), [0.0, 0.0])
    fields: dict[str, float | str] = {"loaded_km": loaded_m / 1000, "sealed_km": sealed_m / 1000,
                                      "plate": t.plate}
    if loaded_m > 0:
        fields["sealed_pct"] = 100.0 * sealed_m / loaded_m
    return Point(TRANSPORT_DAILY, {"site": t.site_id, "device": t.device_id}, dict(fields), to_ns(day))


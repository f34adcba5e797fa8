"""What an alert page shows as evidence, read back from InfluxDB (stream/sinks/SCHEMA.md).

A truck alert: the track around the event (`truck_position`: position, speed, lid, bed, load),
the point where the bed rose and where the load dropped, and the approved disposal sites'
geofences (the city rules). A weighbridge alert: its ticket (`weighing`) with its flags. A
sorting alert: the station's recent drops by verdict (accuracy) and its bins' last fill levels.
Every kind: the stored points whose msg_id is in the alert's evidence (the raw messages).
InfluxDB being down makes the page say so; it never fails the page.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stream.alertkinds import FACILITIES, REGISTRY, SORTING, TRUCKS
from stream.rules import Rules
from stream.sinks.line_protocol import to_ns
from wastestream.foundation.influxql import influxql
from wastestream.foundation.settings import Settings

log = logging.getLogger(__name__)

Query = Callable[[str], list[dict[str, Any]]]
TRACK_BEFORE_S, TRACK_AFTER_S = 20 * 60, 10 * 60
RAW_WINDOW_S = 6 * 3600
RAW_MEASUREMENTS = ("weighing", "deposit", "bin_level", "truck_position", "device_status")
MAX_POINTS = 2000
MIN_DROP_KG = 500.0
"""A load change smaller than this between two reports is scale noise, not unloading."""


@dataclass(frozen=True)
class TrackPoint:
    t_ns: int
    lat: float
    lon: float
    speed: float
    lid_closed: bool | None
    bed_raised: bool | None
    load_kg: float | None


@dataclass(frozen=True)
class Fence:
    id: str
    polygon: list[tuple[float, float]]


@dataclass
class Evidence:
    group: str
    """truck / weighbridge / sorting / other: which drawing the page makes."""
    track: list[TrackPoint] = field(default_factory=list)
    event: tuple[float, float] | None = None
    bed_raised: TrackPoint | None = None
    load_drop: TrackPoint | None = None
    fences: list[Fence] = field(default_factory=list)
    ticket: dict[str, Any] | None = None
    verdicts: dict[str, int] = field(default_factory=dict)
    bins: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        judged = self.verdicts.get("correct", 0) + self.verdicts.get("incorrect", 0)
        return None if not judged else self.verdicts.get("correct", 0) / judged


def group_of(kind: str) -> str:
    known = REGISTRY.get(kind)
    dashboard = known.dashboard if known else ""
    if dashboard == TRUCKS:
        return "truck"
    if dashboard == SORTING:
        return "sorting"
    if dashboard == FACILITIES and kind.startswith("weighbridge_"):
        return "weighbridge"
    return "other"


def _q(text: str) -> str:
    """An InfluxQL string literal (ids come from the store, but quote them anyway)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _raised_ns(alert: dict[str, Any]) -> int:
    return to_ns(datetime.fromisoformat(alert["raised_at"]))


def gather(alert: dict[str, Any], rules: Rules, query: Query) -> Evidence:
    """The evidence of one alert (AlertStore.get's dict)."""
    ev = Evidence(group_of(alert["kind"]))
    if alert.get("lat") is not None and alert.get("lon") is not None:
        ev.event = (float(alert["lat"]), float(alert["lon"]))
    t = _raised_ns(alert)
    device = _q(alert["device_id"])
    try:
        if ev.group == "truck":
            _truck(ev, query, device, t, rules)
        elif ev.group == "weighbridge":
            _ticket(ev, query, device, t, set(alert.get("evidence", [])))
        elif ev.group == "sorting":
            _station(ev, query, device, t)
        _raw(ev, query, device, t, set(alert.get("evidence", [])))
    except Exception as exc:  # InfluxDB down or slow: the page still shows the alert and says why
        log.warning("evidence of %s: %s", alert["alert_id"], exc)
        ev.problems.append(f"证据数据暂不可读 (evidence store unavailable): {type(exc).__name__}")
    return ev


def _truck(ev: Evidence, query: Query, device: str, t: int, rules: Rules) -> None:
    rows = query(f"SELECT lat, lon, speed, lid_closed, bed_raised, load_kg FROM truck_position "
                 f"WHERE device = {device} AND time >= {t - TRACK_BEFORE_S * 10**9} "
                 f"AND time <= {t + TRACK_AFTER_S * 10**9} ORDER BY time LIMIT {MAX_POINTS}")
    ev.track = [TrackPoint(int(r["time"]), float(r["lat"]), float(r["lon"]), float(r.get("speed") or 0.0),
                           r.get("lid_closed"), r.get("bed_raised"), r.get("load_kg"))
                for r in rows if r.get("lat") is not None and r.get("lon") is not None]
    ev.bed_raised = min((p for p in ev.track if p.bed_raised), key=lambda p: abs(p.t_ns - t), default=None)
    drops = [b for a, b in itertools.pairwise(ev.track)
             if a.load_kg is not None and b.load_kg is not None and a.load_kg - b.load_kg >= MIN_DROP_KG]
    ev.load_drop = min(drops, key=lambda p: abs(p.t_ns - t), default=None)  # the drop at the event
    ev.fences = [Fence(g.id, [(float(a), float(b)) for a, b in g.polygon]) for g in rules.disposal_sites]
    if not ev.track:
        ev.problems.append("该时段无轨迹数据 (no track stored around the event)")


def _ticket(ev: Evidence, query: Query, device: str, t: int, evidence: set[str]) -> None:
    rows = query(f"SELECT * FROM weighing WHERE device = {device} AND time >= {t - 3600 * 10**9} "
                 f"AND time <= {t + 3600 * 10**9} LIMIT {MAX_POINTS}")
    exact = [r for r in rows if r.get("msg_id") in evidence]
    pick = exact or sorted(rows, key=lambda r: abs(int(r["time"]) - t))[:1]
    ev.ticket = pick[0] if pick else None
    if ev.ticket is None:
        ev.problems.append("未找到磅单 (no ticket stored near the event)")


def _station(ev: Evidence, query: Query, device: str, t: int) -> None:
    since = t - 86400 * 10**9
    for r in query(f"SELECT count(kg) AS n FROM deposit WHERE device = {device} AND time >= {since} "
                   f"AND time <= {t + 3600 * 10**9} GROUP BY verdict"):
        ev.verdicts[str(r.get("verdict", ""))] = int(r["n"])
    ev.bins = query(f"SELECT last(fill_pct) AS fill_pct FROM bin_level WHERE device = {device} "
                    f"AND time <= {t + 3600 * 10**9} AND time >= {since} GROUP BY bin")


def _raw(ev: Evidence, query: Query, device: str, t: int, evidence: set[str]) -> None:
    if not evidence:
        return
    window = f"time >= {t - RAW_WINDOW_S * 10**9} AND time <= {t + RAW_WINDOW_S * 10**9}"
    for measurement in RAW_MEASUREMENTS:
        rows = query(f"SELECT * FROM {measurement} WHERE device = {device} AND {window} LIMIT 10000")
        ev.raw += [{"measurement": measurement, **r} for r in rows if r.get("msg_id") in evidence]
    ev.raw.sort(key=lambda r: int(r["time"]))


def influx_query(settings: Settings) -> Query:
    """InfluxQL against the settings' InfluxDB."""
    def run(text: str) -> list[dict[str, Any]]:
        return influxql(settings, text, timeout=5.0)

    return run

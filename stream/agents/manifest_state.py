"""Electronic manifests (电子联单), pure: match each load that leaves an origin to its arrival.

Input is the internal, plate-keyed manifest-event stream (stream/agents/manifest.py), so all
of one plate's departures and arrivals meet in one partition and one table value:
- `departure`: the truck's load sensor going from empty to loaded as it drives off (origin =
  its registered site) or an origin weighbridge ticket with direction `out` (origin = that site);
- `arrival`: a weighbridge ticket with direction `in` (destination = that facility) or the
  truck's legal unload inside a disposal geofence (destination = the geofence);
- `check`: the timer's "event time is now X", to close manifests that never arrive.

Matching: an arrival closes the OLDEST open manifest of the plate that left before it
(FIFO: a truck carries one load at a time). The same load seen by both instruments (a
sensor departure and an `out` ticket; a weighbridge `in` and the unload behind it) within
`MERGE_WINDOW_S` is one manifest: the weighbridge's weight wins (it is the calibrated one).
An arrival with no open manifest is kept for `timeout_s` (at most `EARLY_ARRIVALS` per plate):
departures and arrivals come from different devices, hence different Kafka partitions, and an
origin's edge may replay its outbox after an outage, so the departure can reach the stream AFTER
its arrival; it then closes against the kept arrival. Most such arrivals (household-waste
tickets) simply age out.

`manifest_mismatch` when `(left - arrived) / left` exceeds `tolerance_pct`;
`manifest_missing` when the event-time clock passes departure + `timeout_s`. Both dedup on
plate + the departure's event id: one alert per manifest, the same id after any replay.
Event ids seen are remembered (bounded), so a re-delivered event changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from contract.events import Alert
from stream.alerting.make import make_alert
from stream.rules import Rules
from stream.sinks.line_protocol import Point

MERGE_WINDOW_S = 1800.0
SEEN_IDS = 64
EARLY_ARRIVALS = 8
NS = 1_000_000_000
MANIFEST = "manifest"
Status = Literal["matched", "mismatch", "missing"]


class Event(msgspec.Struct, kw_only=True):
    """One manifest event (the JSON on the internal topic)."""

    type: Literal["departure", "arrival", "check"]
    plate: str
    ts_ns: int
    id: str = ""
    kg: float = 0.0
    place: str = ""
    source: Literal["truck", "weighbridge", "timer"] = "timer"
    device: str = ""
    site: str = ""
    msg_id: str = ""


class Manifest(msgspec.Struct, kw_only=True):
    id: str
    plate: str
    left_kg: float
    origin: str
    source: str
    device: str
    site: str
    ts_ns: int
    evidence: list[str] = []


class PlateState(msgspec.Struct):
    seen: list[str] = []
    open: list[Manifest] = []
    last_arrival: Event | None = None
    early: list[Event] = []
    """Arrivals that found no open manifest (newest last): a departure may still come (see above)."""
    partition: int | None = None
    """The source partition of this key: the timer only checks keys of partitions it owns."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PlateState:
        return msgspec.convert(data, cls) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def due(self, now_ns: int, rules: Rules) -> bool:
        """True when some open manifest has timed out at event time `now_ns` (the timer's question)."""
        return any(now_ns - m.ts_ns > rules.manifest.timeout_s * NS for m in self.open)


class Output(msgspec.Struct):
    duplicate: bool = False
    alerts: list[Alert] = []
    points: list[Point] = []


def step(state: PlateState, e: Event, rules: Rules) -> Output:
    """Apply one event to `state` (mutated)."""
    out = Output()
    if e.type != "check":
        if e.id in state.seen:
            out.duplicate = True
            return out
        state.seen = [*state.seen, e.id][-SEEN_IDS:]
    if e.type == "departure":
        _depart(state, e, rules, out)
    elif e.type == "arrival":
        _arrive(state, e, rules, out)
    else:
        _expire(state, e.ts_ns, rules, out)
    return out


def _depart(state: PlateState, e: Event, rules: Rules, out: Output) -> None:
    for m in state.open:
        if m.source != e.source and abs(m.ts_ns - e.ts_ns) <= MERGE_WINDOW_S * NS:
            m.evidence = [*m.evidence, e.msg_id]
            if e.source == "weighbridge":
                m.left_kg, m.origin, m.device, m.site = e.kg, e.place, e.device, e.site
            return
    m = Manifest(id=e.id, plate=e.plate, left_kg=e.kg, origin=e.place, source=e.source,
                 device=e.device, site=e.site, ts_ns=e.ts_ns, evidence=[e.msg_id])
    state.open.append(m)
    early = next((a for a in state.early if a.ts_ns >= m.ts_ns), None)
    if early is not None:  # its arrival reached the stream first
        state.early.remove(early)
        _close(state, m, early, rules, out)


def _arrive(state: PlateState, e: Event, rules: Rules, out: Output) -> None:
    last = state.last_arrival
    if last is not None and last.source != e.source and abs(last.ts_ns - e.ts_ns) <= MERGE_WINDOW_S * NS:
        return  # the other instrument's view of an arrival already matched
    m = next((m for m in state.open if m.ts_ns <= e.ts_ns), None)
    if m is None:
        limit = round(rules.manifest.timeout_s * NS)
        kept = [a for a in state.early if e.ts_ns - a.ts_ns <= limit][-(EARLY_ARRIVALS - 1):]
        state.early = [*kept, e]
        return
    _close(state, m, e, rules, out)


def _close(state: PlateState, m: Manifest, e: Event, rules: Rules, out: Output) -> None:
    """Arrival `e` delivers manifest `m`: matched, or mismatch (alert) beyond the tolerance."""
    state.open.remove(m)
    state.last_arrival = e
    diff_pct = 100.0 * (m.left_kg - e.kg) / m.left_kg if m.left_kg > 0 else 0.0
    status: Status = "mismatch" if diff_pct > rules.manifest.tolerance_pct else "matched"
    if status == "mismatch":
        out.alerts.append(make_alert(
            "manifest_mismatch", site_id=e.site, device_id=e.device, subject=e.plate,
            summary=f"{e.plate}: left {m.origin} with {m.left_kg:.0f} kg, arrived at {e.place} with "
                    f"{e.kg:.0f} kg ({diff_pct:.1f} % less, tolerance {rules.manifest.tolerance_pct} %)",
            evidence=[*m.evidence, e.msg_id], ts=_dt(e.ts_ns), dedup_key=f"{e.plate}|{m.id}"))
    out.points.append(manifest_point(m, status, e, diff_pct))


def _expire(state: PlateState, now_ns: int, rules: Rules, out: Output) -> None:
    limit = round(rules.manifest.timeout_s * NS)
    for m in [m for m in state.open if now_ns - m.ts_ns > limit]:
        state.open.remove(m)
        out.alerts.append(make_alert(
            "manifest_missing", site_id=m.site, device_id=m.device, subject=m.plate,
            summary=f"{m.plate}: load of {m.left_kg:.0f} kg from {m.origin} not delivered within "
                    f"{rules.manifest.timeout_s:.0f} s", evidence=m.evidence, ts=_dt(m.ts_ns + limit),
            dedup_key=f"{m.plate}|{m.id}"))
        out.points.append(manifest_point(m, "missing", None, None))


def manifest_point(m: Manifest, status: Status, arrival: Event | None,
                   diff_pct: float | None) -> Point:
    """One per closed manifest, at its departure time; `device` (the departure's) keeps series unique."""
    fields: dict[str, float | str] = {"left_kg": m.left_kg, "plate": m.plate, "manifest_id": m.id,
                                      "departure_msg_ids": ",".join(m.evidence), "source": m.source}
    if arrival is not None and diff_pct is not None:
        fields.update(arrived_kg=arrival.kg, diff_pct=diff_pct, arrival_msg_id=arrival.msg_id)
    return Point(MANIFEST, {"origin": m.origin, "destination": arrival.place if arrival else "",
                            "status": status, "device": m.device}, dict(fields), m.ts_ns)


def _dt(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


class Watermark:
    """Event-time clock of one worker: the newest event time seen, advanced by wall time since.

    Why both: event time keeps a replayed backlog from timing out manifests whose arrivals are
    just behind in the stream; the wall-time advance lets a manifest time out when nothing at
    all arrives any more (the truck never reports again). Residual risk: partitions replayed
    far out of step (more than `timeout_s` apart) can close a manifest as missing early.
    """

    def __init__(self) -> None:
        self.max_ns: int | None = None
        self.wall_at_max: float = 0.0

    def observe(self, ts_ns: int, wall_s: float) -> None:
        if self.max_ns is None or ts_ns > self.max_ns:
            self.max_ns, self.wall_at_max = ts_ns, wall_s

    def now_ns(self, wall_s: float) -> int | None:
        if self.max_ns is None:
            return None
        return self.max_ns + max(0, round((wall_s - self.wall_at_max) * NS))

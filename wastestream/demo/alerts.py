"""The alerts the demo raised, next to the incidents its scenario plays ("expected 4, raised 4").

Expected: each incident of the scenario's stations and trucks raises the kinds of
`INCIDENT_ALERTS` (a wrong-bin drop only lowers the day's accuracy, a torn NMEA sentence is
dead-lettered at the edge: none), and each flag the weighbridge sim put on a ticket raises its
`weighbridge_<flag>` once per plate (the alert service's cooldown). Raised: the alert service's
store. Each is shown as officers would read it: kind in Chinese and English
(stream/alertkinds.py), the plate or station, the place (facility, community or fleet name, and
the position where there is one), the time in the city's time zone (Beijing time for 柳州).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from firmware_sim.scenario import Scenario
from stream import alertkinds
from wastestream.indicators.alerts import AlertRecord

INCIDENT_ALERTS: dict[str, tuple[str, ...]] = {
    "dump_outside": ("illegal_dumping", "manifest_mismatch"),  # and the truck arrives lighter
    "uncovered": ("uncovered_transport",),
    "full_bin": ("bin_full",),
    "wrong_bin": (),
    "out_of_range": (),
    "bad_checksum": (),
    "torn_sentence": (),
    "gps_loss": (),
}


@dataclass(frozen=True)
class Expected:
    kind: str
    subject: str
    why: str


def expected_alerts(scenario: Scenario, ledger: Path) -> list[Expected]:
    """What the scenario's incidents and the sim's flagged tickets should raise."""
    out = []
    for community in scenario.communities:
        for station in community.stations:
            for i in station.incidents:
                out += [Expected(k, station.id, f"{i.name or i.kind} at {station.id}")
                        for k in INCIDENT_ALERTS[i.kind]]
    for truck in scenario.trucks:
        for t in truck.incidents:
            out += [Expected(k, truck.plate, f"{t.name or t.kind} of {truck.plate}")
                    for k in INCIDENT_ALERTS[t.kind]]
    flagged = set()
    if ledger.exists():
        for line in ledger.read_text(encoding="utf-8").splitlines():
            visit = json.loads(line)
            if visit.get("kind") == "weighing":
                flagged |= {(f"weighbridge_{f}", visit["plate"], visit["site_id"])
                            for f in visit.get("flags", ())}
    out += [Expected(kind, plate, f"ticket of {plate} at {site} flagged")
            for kind, plate, site in sorted(flagged)]
    return out


def place_names(scenario: Scenario) -> dict[str, str]:
    """site id -> what officers call it."""
    names = {f.id: f.name for f in scenario.facilities} | {c.id: c.name for c in scenario.communities}
    names |= {f"fleet-{origin}": f"{origin} 渣土车队 (muck-truck fleet)" for origin in scenario.fleets()}
    return names


def local_time(raised_at: str, tz: str) -> str:
    ts = datetime.fromisoformat(raised_at.replace("Z", "+00:00"))
    return ts.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M:%S")


def render(expected: list[Expected], raised: list[AlertRecord], scenario: Scenario, tz: str,
           zone_name: str) -> list[str]:
    """The alerts raised, one line each, then the comparison per expected alert and in total."""
    names = place_names(scenario)
    lines = [f"Alerts raised ({len(raised)}), times in {zone_name}:"]
    for a in sorted(raised, key=lambda a: a.raised_at):
        kind = alertkinds.REGISTRY.get(a.kind)
        label = f"{kind.name_zh} {kind.name_en}" if kind else a.kind
        where = names.get(a.site_id, a.site_id)
        if a.lat is not None and a.lon is not None:
            where += f" @ {a.lat:.4f},{a.lon:.4f}"
        lines.append(f"  {local_time(a.raised_at, tz)}  [{a.severity}] {label}: {a.subject}, {where}")
    got = Counter((a.kind, a.subject.split("/")[0]) for a in raised)  # a station's bin: station/bin
    met = 0
    lines.append("Expected from the scenario's incidents:")
    for e in expected:
        hit = got[(e.kind, e.subject)] > 0
        met += hit
        kind = alertkinds.REGISTRY.get(e.kind)
        label = f"{kind.name_zh} {kind.name_en}" if kind else e.kind
        lines.append(f"  {'raised' if hit else 'MISSING'}: {label} for {e.subject} ({e.why})")
    wanted = {(e.kind, e.subject) for e in expected}
    extra = [a for a in raised if (a.kind, a.subject.split("/")[0]) not in wanted]
    kinds = ", ".join(sorted({a.kind for a in extra}))
    unexpected = f", {len(extra)} not expected: {kinds}" if extra else ""
    lines.append(f"Alerts: expected {len(expected)}, raised {len(raised)} "
                 f"({met} of the expected{unexpected})")
    return lines

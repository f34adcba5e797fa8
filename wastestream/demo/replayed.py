"""The replayed day in the demo: how far its delivery is, and its figures against the scenario.

The sim put the day into the edge outboxes (firmware_sim/replay/, `<run_dir>/sim/replay.json`);
the edge agents deliver it when they start. Delivery is watched at both ends: rows of the day
still in the outboxes (their msg_ids carry the day's epoch) and what InfluxDB holds for the day,
per measurement, against what was written. Its tonnage is then shown per facility with the
facility's design capacity (the load a city engineer checks).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from firmware_sim.replay.backlog import outbox_paths
from firmware_sim.scenario import Scenario
from wastestream.foundation.influxql import InfluxQueryError, influxql
from wastestream.foundation.settings import Settings

MEASUREMENTS = {"weighing": ("weighing", "net_kg"), "deposit": ("deposit", "kg"),
                "bin_level": ("bin_level", "fill_pct"), "truck_telemetry": ("truck_position", "lat")}
"""Event -> (InfluxDB measurement, a field every point has): one point per message."""


@dataclass(frozen=True)
class Replayed:
    """The replay's summary as the sim wrote it."""

    day: str
    start: datetime
    end: datetime
    messages: int
    events: dict[str, int]
    tonnage: dict[str, dict[str, float]]
    sites: set[str]

    @classmethod
    def of(cls, summary: dict[str, Any]) -> Replayed:
        return cls(summary["day"], datetime.fromisoformat(summary["start"]),
                   datetime.fromisoformat(summary["end"]), int(summary["messages"]),
                   dict(summary["events"]), dict(summary["tonnage"]), set(summary["sites"]))

    @property
    def epoch(self) -> int:
        return int(self.start.timestamp())

    def where(self) -> str:
        """The day's points of this replay: its time range and msg_ids of its epoch (so a demo run
        of that day, or other data in a shared database, is not counted)."""
        ns = (int(self.start.timestamp()) * 10**9, int(self.end.timestamp()) * 10**9)
        return f'time >= {ns[0]} AND time < {ns[1]} AND "msg_id" =~ /:{self.epoch}:/'


def left_in_outboxes(run_dir: Path, replayed: Replayed) -> int:
    """Rows of the replayed day still in the sites' outboxes (read-only; a locked file counts 0)."""
    left = 0
    for path in outbox_paths(run_dir).values():
        if not path.exists():
            continue
        with contextlib.suppress(sqlite3.Error), contextlib.closing(
                sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as db:
            left += int(db.execute("SELECT COUNT(*) FROM messages WHERE msg_id LIKE ?",
                                   (f"%:{replayed.epoch}:%",)).fetchone()[0])
    return left


def held(settings: Settings, replayed: Replayed) -> dict[str, int]:
    """Points InfluxDB holds for the day at the replayed sites, per event type."""
    sites = "|".join(sorted(replayed.sites))
    out = {}
    for event, (measurement, field) in MEASUREMENTS.items():
        if not replayed.events.get(event):
            continue
        try:
            rows = influxql(settings, f'SELECT count("{field}") AS n FROM "{measurement}" '
                                      f"WHERE {replayed.where()} AND site =~ /^({sites})$/")
        except InfluxQueryError:
            rows = []  # the measurement does not exist yet
        out[event] = sum(int(r["n"]) for r in rows)
    return out


def tonnage(settings: Settings, replayed: Replayed) -> dict[str, tuple[int, float]]:
    """site -> (tickets, net kg) InfluxDB holds for the replayed day."""
    rows = influxql(settings, f'SELECT count("net_kg") AS tickets, sum("net_kg") AS net_kg FROM "weighing" '
                              f"WHERE {replayed.where()} GROUP BY site")
    return {r["site"]: (int(r["tickets"]), float(r["net_kg"])) for r in rows if r["site"] in replayed.tonnage}


def render(replayed: Replayed, got: dict[str, tuple[int, float]], scenario: Scenario) -> tuple[str, bool]:
    """The day's tonnage per facility: written vs in InfluxDB, with capacity and load."""
    facilities = {f.id: f for f in scenario.facilities}
    header = (f"{'facility':<20} {'tickets':>7} {'net t':>9} {'in DB':>6} {'net t in DB':>11} "
              f"{'capacity t/d':>12} {'load':>6}  ok")
    lines = [header, "-" * len(header)]
    ok_all = True
    totals = [0, 0.0, 0, 0.0, 0.0]
    for site in sorted(replayed.tonnage):
        sent = replayed.tonnage[site]
        tickets, kg = got.get(site, (0, 0.0))
        cap = facilities[site].capacity_t_per_day
        ok = tickets == int(sent["tickets"]) and abs(kg - sent["net_kg"]) < 0.5
        ok_all &= ok
        load = 100 * kg / 1000 / cap
        lines.append(f"{site:<20} {int(sent['tickets']):>7} {sent['net_kg'] / 1000:>9.1f} {tickets:>6} "
                     f"{kg / 1000:>11.1f} {cap:>12,.0f} {load:>5.1f}%  {'yes' if ok else 'NO'}")
        lines.append(f"  {facilities[site].name}")
        for i, v in enumerate((int(sent["tickets"]), sent["net_kg"], tickets, kg, cap)):
            totals[i] += v
    lines.append("-" * len(header))
    load = 100 * totals[3] / 1000 / totals[4] if totals[4] else 0.0
    lines.append(f"{'total':<20} {int(totals[0]):>7} {totals[1] / 1000:>9.1f} {int(totals[2]):>6} "
                 f"{totals[3] / 1000:>11.1f} {totals[4]:>12,.0f} {load:>5.1f}%  {'yes' if ok_all else 'NO'}")
    return "\n".join(lines), ok_all

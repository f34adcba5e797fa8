"""The tonnage analysis's rules (pure): facility load against capacity, zero-landfill of raw waste.

Per-device daily totals live in the partition of their device; a facility's total needs all
of its weighbridges. So the tonnage step forwards each device's running day total (a
`DeviceDayTotal`) on a site-keyed internal topic, and a site-keyed step keeps `SiteLoad`:
the LARGEST total seen per device and day (totals only grow), summed per day. That is
idempotent and order-free, so replays after a crash neither double nor lower it. The alert
mark lives in the same table value, so "alerted today" and the totals cannot diverge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.events import Alert, Direction, Weighing
from contract.msgid import site_msg_id
from stream.agents.localday import day_label
from stream.agents.tonnage_points import DeviceDayTotal
from stream.alerting.make import make_alert
from stream.dedup import KEEP_DAYS, NS_PER_DAY
from stream.rules import Rules


@dataclass
class SiteLoad:
    """Per facility: day_ns -> device -> (kg, tickets), and the days already alerted."""

    days: dict[int, dict[str, tuple[float, int]]] = field(default_factory=dict)
    alerted: set[int] = field(default_factory=set)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SiteLoad:
        if not data:
            return cls()
        return cls(
            days={int(d): {dev: (float(v[0]), int(v[1])) for dev, v in devs.items()}
                  for d, devs in data.get("days", {}).items()},
            alerted={int(d) for d in data.get("alerted", ())},
        )

    def to_json(self) -> dict[str, Any]:
        days = {str(d): {dev: [kg, n] for dev, (kg, n) in devs.items()} for d, devs in self.days.items()}
        return {"days": days, "alerted": sorted(self.alerted)}

    def merge(self, t: DeviceDayTotal) -> None:
        """Keep the largest running total per device and day; prune days beyond KEEP_DAYS."""
        new_day = t.day_ns not in self.days
        devices = self.days.setdefault(t.day_ns, {})
        old_kg, old_n = devices.get(t.device, (0.0, 0))
        if (t.tickets, t.kg) > (old_n, old_kg):
            devices[t.device] = (t.kg, t.tickets)
        if new_day:  # only a new day can push an old one out of the window
            floor = max(self.days) - KEEP_DAYS * NS_PER_DAY
            self.days = {d: v for d, v in self.days.items() if d > floor}
            self.alerted = {d for d in self.alerted if d > floor}

    def total(self, day_ns: int) -> tuple[float, int, int]:
        """(kg, tickets, devices) of the facility on that day."""
        devices = self.days.get(day_ns, {})
        return sum(kg for kg, _ in devices.values()), sum(n for _, n in devices.values()), len(devices)


def over_capacity(load: SiteLoad, t: DeviceDayTotal, rules: Rules) -> Alert | None:
    """The facility's day exceeds its design capacity and was not alerted yet (marks it alerted)."""
    facility = rules.facility(t.site)
    kg, _, _ = load.total(t.day_ns)
    if facility is None or kg / 1000 <= facility.capacity_t_per_day or t.day_ns in load.alerted:
        return None
    load.alerted.add(t.day_ns)
    day = day_label(t.day_ns, rules.timezone)
    return make_alert(
        "over_capacity", site_id=t.site, device_id=t.device, subject=t.site,
        summary=f"{t.site} received {kg / 1000:.1f} t on {day}, above its design capacity of "
                f"{facility.capacity_t_per_day:g} t/d",
        evidence=[t.msg_id], ts=datetime.fromtimestamp(t.ts_ns / 1e9, UTC), dedup_key=f"{t.site}|{day}",
    )


def raw_waste_landfilled(w: Weighing, rules: Rules) -> Alert | None:
    """An inbound ticket of raw household waste at a 全焚烧、零填埋 facility (one alert per ticket)."""
    facility = rules.facility(w.site_id)
    if (facility is None or not facility.zero_landfill_raw or w.direction != Direction.INBOUND
            or w.category not in rules.raw_household_categories):
        return None
    return make_alert(
        "raw_waste_landfilled", site_id=w.site_id, device_id=w.device_id, subject=w.plate,
        summary=f"{w.net_kg / 1000:.2f} t of raw {w.category.value} waste from {w.origin} (truck {w.plate}, "
                f"ticket {w.ticket_id}) landed at {w.site_id}, where raw household waste must not go",
        evidence=[w.msg_id], ts=w.ts, dedup_key=site_msg_id(w.site_id, w.msg_id),
    )

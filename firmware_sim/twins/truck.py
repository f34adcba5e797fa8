"""Muck-truck twin: an NMEA pty and a Modbus TCP I/O module per truck, driven at its `time_scale`;
one edge site per fleet, grouped by origin (`fleet-<origin>`: a fleet operator's gateway; in
reality each truck's terminal is its own agent, which is only a different grouping)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from firmware_sim import truck as truck_sim
from firmware_sim.scenario import Scenario, TruckSpec
from firmware_sim.twins.base import HOLD_BUDGET_S, LEAD_S, CityPlan, Ledger, Ready, Twin


def fleet_site_id(origin: str) -> str:
    return f"fleet-{origin}"


def truck_clock_span_s(spec: TruckSpec, duration: float) -> float:
    """Simulated seconds a truck drives in a run: its GPS clock ends at the wall clock, so it
    starts this far in the past (late data, as after a long outage; never data from the future)."""
    return (LEAD_S + duration) * spec.time_scale


def truck_record(site_id: str, spec: TruckSpec, entry: truck_sim.LedgerEntry,
                 name: str | None) -> dict[str, Any]:
    """A dump or incident: `event` is its kind, start/end in simulated GPS time, place, loads."""
    details = msgspec.to_builtins(entry)
    details["event"] = details.pop("kind")
    return {"kind": "truck", "site_id": site_id, "device_id": spec.id, "plate": spec.plate,
            "name": name, "disposal_site": spec.disposal_site, **details, "expect_ticket": False}


def fleet_site_config(plan: CityPlan, origin: str, trucks: list[TruckSpec]) -> dict[str, Any]:
    """The edge agent's config for one fleet: each terminal's GPS pty and I/O module port.

    Report interval and I/O poll shrink with the truck's time_scale so that a dump (10 simulated
    seconds) is still seen and reported as it happens. A time-compressed truck's GPS clock starts
    in the past (see truck_clock_span_s), so the fleet's skew bound is widened by that span.
    """
    interval = plan.scenario.rates.truck_report_interval_s
    span = max((truck_clock_span_s(t, plan.duration) for t in trucks), default=0.0)
    return {**plan.site(fleet_site_id(origin)),
            "clock": {"max_skew_s": round(300 + span)}, "devices": [
        {"id": t.id, "kind": "truck", "plate": t.plate, "gps_port": str(plan.dev(f"{t.id}-gps")),
         "io_port": plan.ports[t.id], "io_profile": t.io_profile,
         "io_poll_s": round(max(0.05, min(0.5, 2.0 / t.time_scale)), 3),
         "report_interval_s": round(max(0.5, interval / t.time_scale), 3)}
        for t in trucks
    ]}


async def run_truck(plan: CityPlan, spec: TruckSpec, index: int,
                    ledger: Ledger) -> truck_sim.TruckLedger | None:
    """One truck for LEAD_S + `duration` real seconds at its time_scale; its dumps and incidents
    go to the ledger when the run ends (their end times and loads are known then)."""
    scale, lead = spec.time_scale, LEAD_S * spec.time_scale
    incidents = [truck_sim.Incident(kind=i.kind, at_s=i.at_s + lead, duration_s=i.duration_s,
                                    at_fraction=i.at_fraction, drop_fraction=i.drop_fraction)
                 for i in spec.incidents]
    names: dict[str, str | None] = {i.kind: i.name for i in spec.incidents}
    entries: list[truck_sim.LedgerEntry] = []
    hold = HOLD_BUDGET_S * scale if plan.hold is not None else 0.0  # drives on, its clock that much earlier

    def on_event(item: truck_sim.LedgerPoint | truck_sim.LedgerEntry) -> None:
        if isinstance(item, truck_sim.LedgerEntry):
            entries.append(item)

    try:
        return await truck_sim.run_truck_sim(
            spec, gps_path=plan.dev(f"{spec.id}-gps"), io_port=plan.ports[spec.id],
            seed=plan.scenario.seed + index, duration_s=(LEAD_S + plan.duration) * scale + hold,
            time_scale=scale, incidents=incidents, on_event=on_event, io_profile=spec.io_profile,
            start_utc=datetime.now(UTC) - timedelta(seconds=truck_clock_span_s(spec, plan.duration) + hold))
    finally:
        for entry in entries:
            ledger.write(truck_record(fleet_site_id(spec.origin), spec, entry, names.get(entry.kind)))


class TruckTwin(Twin):
    kind = "truck"

    def tcp_devices(self, scenario: Scenario) -> list[str]:
        return [t.id for t in scenario.trucks if t.terminal == "nmea"]

    def site_configs(self, plan: CityPlan) -> list[dict[str, Any]]:
        return [fleet_site_config(plan, origin, nmea) for origin, trucks in plan.scenario.fleets().items()
                if (nmea := [t for t in trucks if t.terminal == "nmea"])]

    def runs(self, plan: CityPlan, ledger: Ledger, ready: Ready) -> list[Awaitable[Any]]:
        return [run_truck(plan, t, i, ledger) for i, t in enumerate(plan.scenario.trucks)
                if t.terminal == "nmea"]

    def describe(self, results: list[Any]) -> str:
        return f"{len(results)} trucks"

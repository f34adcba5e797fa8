"""Weighbridge twin: an indicator pty and a plate-camera pty per weighbridge, one edge site per facility."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from firmware_sim.scenario import FacilitySpec, Scenario, WeighbridgeSpec
from firmware_sim.twins.base import LEAD_S, CityPlan, Ledger, Ready, Twin
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge


def visit_pacing(scenario: Scenario) -> tuple[float, float, float]:
    """(ramp_s, stable_s, gap_s) so each weighbridge sees the scenario's visit rate."""
    period = 60.0 / (scenario.rates.visits_per_weighbridge_per_min * scenario.rate_scale)
    stable = scenario.rates.stable_s
    ramp = max(0.3, min(2.0, period / 6))
    gap = max(0.5, period - 2 * ramp - stable)
    return ramp, stable, gap


def plan_visits(scenario: Scenario, facility: FacilitySpec, bridge: WeighbridgeSpec,
                until: float, last_weighed: dict[str, float]) -> Iterator[TruckVisit]:
    """Seeded truck visits, generated lazily until the monotonic deadline `until`.

    A truck is not sent back to a weighbridge within the double-weighing window (it is on
    its round) unless the whole fleet is: then the least recently weighed one goes.
    """
    rng = random.Random(f"{scenario.seed}:{bridge.id}")
    fleet = scenario.vehicles_for(facility)
    fault_rate = scenario.rates.frame_fault_rate
    window = scenario.rates.double_weigh_window_s
    while (now := time.monotonic()) < until:
        rested = [v for v in fleet if now - last_weighed.get(v.plate, -window) > window]
        vehicle = rng.choice(rested) if rested else min(fleet, key=lambda v: last_weighed.get(v.plate, 0.0))
        last_weighed[vehicle.plate] = now
        capacity = vehicle.rated_gross_kg - vehicle.tare_kg
        load = rng.uniform(scenario.rates.min_load_fraction, 1.0) * capacity
        gross = min(vehicle.rated_gross_kg, vehicle.tare_kg + load)
        gross = (gross // bridge.division_kg) * bridge.division_kg
        incidents = tuple(kind for kind in ("torn_frame", "bad_checksum", "remote_jump")
                          if rng.random() < fault_rate)
        yield TruckVisit(vehicle.plate, gross, vehicle.tare_kg, vehicle.rated_gross_kg, incidents)


def weighing_record(site_id: str, device_id: str, entry: LedgerEntry) -> dict[str, Any]:
    """A finished visit: what the tonnage must add up to (the only kind with `expect_ticket`)."""
    return {
        "kind": "weighing", "site_id": site_id, "device_id": device_id, "plate": entry.visit.plate,
        "gross_kg": entry.gross_kg, "tare_kg": entry.tare_kg, "net_kg": entry.net_kg,
        "flags": list(entry.flags), "incidents": list(entry.visit.incidents),
        "finished": entry.finished.isoformat(), "expect_ticket": True,
    }


def edge_site_config(plan: CityPlan, facility: FacilitySpec) -> dict[str, Any]:
    """The edge agent's config for one facility: its weighbridges on our ptys, the city's fleet."""
    scenario = plan.scenario
    hold_s = min(1.0, scenario.rates.stable_s / 2.5)
    return {
        **plan.site(facility.id),
        "vehicles": [
            {"plate": v.plate, "tare_kg": v.tare_kg, "rated_gross_kg": v.rated_gross_kg,
             "category": v.category.value, "origin": v.origin}
            for v in scenario.vehicles
        ],
        "devices": [
            {
                "id": wb.id,
                "kind": "weighbridge",
                "port": str(plan.dev(wb.id)),
                "anpr_port": str(plan.dev(f"{wb.id}-anpr")),
                "baudrate": wb.baudrate,
                "format": wb.format,
                "division_kg": wb.division_kg,
                "occupied_kg": 500,
                "stable": {"tolerance_kg": wb.division_kg, "hold_s": hold_s},
                "double_weigh_window_s": scenario.rates.double_weigh_window_s,
            }
            for wb in facility.weighbridges
        ],
    }


class WeighbridgeTwin(Twin):
    kind = "weighbridge"

    def site_configs(self, plan: CityPlan) -> list[dict[str, Any]]:
        return [edge_site_config(plan, f) for f in plan.scenario.weighbridge_sites()]

    def runs(self, plan: CityPlan, ledger: Ledger, ready: Ready) -> list[Awaitable[Any]]:
        scenario = plan.scenario
        ramp, stable, gap = visit_pacing(scenario)
        until = time.monotonic() + LEAD_S + plan.duration
        last_weighed: dict[str, float] = {}

        def recorder(site_id: str, device_id: str) -> Callable[[LedgerEntry], None]:
            return lambda entry: ledger.write(weighing_record(site_id, device_id, entry))

        return [
            run_weighbridge(
                plan.dev(wb.id), plan.dev(f"{wb.id}-anpr"), wb.format,
                plan_visits(scenario, f, wb, until, last_weighed),  # type: ignore[arg-type]  # lazily generated
                hz=scenario.rates.frame_hz, stable_s=stable, gap_s=gap, ramp_s=ramp, lead_s=LEAD_S,
                division_kg=wb.division_kg, seed=scenario.seed, on_sent=recorder(f.id, wb.id),
                on_ready=ready(), double_weigh_window_s=scenario.rates.double_weigh_window_s,
                hold=plan.hold,
            )
            for f in scenario.weighbridge_sites() for wb in f.weighbridges
        ]

    def describe(self, results: list[Any]) -> str:
        return f"{sum(len(r) for r in results)} truck visits on {len(results)} weighbridges"

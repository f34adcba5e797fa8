"""`wastestream sim`: play a scenario's city on simulated devices, over their real wires.

For every weighbridge it creates the indicator's and the plate camera's ptys under
`<run_dir>/dev/`, writes one edge-agent site config per facility under `<run_dir>/edge/`
(so the agents find the ports and the vehicle registry), touches `<run_dir>/sim/ready`,
then drives trucks across the bridges until `--duration` has passed. Every finished visit
is appended to `<run_dir>/sim/ledger.jsonl`: what the pipeline must end up counting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from firmware_sim.scenario import DEFAULT_SCENARIO, FacilitySpec, Scenario, WeighbridgeSpec, load_scenario
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge
from wastestream.settings import Settings, load_settings

log = logging.getLogger("firmware_sim.city")

LEAD_S = 6.0
"""Idle frames before the first truck: time for the edge agents to start and open their ports."""


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
        incidents = tuple(kind for kind in ("torn_frame", "bad_checksum") if rng.random() < fault_rate)
        yield TruckVisit(vehicle.plate, gross, vehicle.tare_kg, vehicle.rated_gross_kg, incidents)


def edge_site_config(scenario: Scenario, facility: FacilitySpec, run_dir: Path,
                     settings: Settings) -> dict[str, Any]:
    """The edge agent's config for one facility: its weighbridges on our ptys, the city's fleet."""
    hold_s = min(1.0, scenario.rates.stable_s / 2.5)
    return {
        "site_id": facility.id,
        "mqtt": {"host": settings.mqtt_host, "port": settings.mqtt_port},
        "outbox": {"path": str(run_dir / "edge" / f"{facility.id}.db"), "max_messages": 100_000},
        "vehicles": [
            {"plate": v.plate, "tare_kg": v.tare_kg, "rated_gross_kg": v.rated_gross_kg,
             "category": v.category.value, "origin": v.origin}
            for v in scenario.vehicles
        ],
        "devices": [
            {
                "id": wb.id,
                "kind": "weighbridge",
                "port": str(run_dir / "dev" / wb.id),
                "anpr_port": str(run_dir / "dev" / f"{wb.id}-anpr"),
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


class Ledger:
    """Append-only JSON lines, flushed per entry so a reader never sees half a record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def weighing(self, site_id: str, device_id: str, entry: LedgerEntry) -> None:
        self.write({
            "kind": "weighing", "site_id": site_id, "device_id": device_id, "plate": entry.visit.plate,
            "gross_kg": entry.gross_kg, "tare_kg": entry.tare_kg, "net_kg": entry.net_kg,
            "flags": list(entry.flags), "incidents": list(entry.visit.incidents),
            "finished": entry.finished.isoformat(), "expect_ticket": True,
        })

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


async def run_city(scenario: Scenario, run_dir: Path, duration: float, settings: Settings) -> int:
    """Run every simulated device until `duration` seconds of traffic have been generated."""
    for sub in ("dev", "edge", "sim"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    for facility in scenario.weighbridge_sites():
        config = edge_site_config(scenario, facility, run_dir, settings)
        (run_dir / "edge" / f"{facility.id}.yaml").write_text(
            yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ledger = Ledger(run_dir / "sim" / "ledger.jsonl")
    ramp, stable, gap = visit_pacing(scenario)
    until = time.monotonic() + LEAD_S + duration
    bridges = [(f, wb) for f in scenario.weighbridge_sites() for wb in f.weighbridges]
    pending_ready = len(bridges)
    last_weighed: dict[str, float] = {}

    def ready() -> None:
        nonlocal pending_ready
        pending_ready -= 1
        if pending_ready == 0:
            (run_dir / "sim" / "ready").touch()

    def recorder(site_id: str, device_id: str) -> Any:
        return lambda entry: ledger.weighing(site_id, device_id, entry)

    tasks = [
        run_weighbridge(
            run_dir / "dev" / wb.id, run_dir / "dev" / f"{wb.id}-anpr", wb.format,
            plan_visits(scenario, f, wb, until, last_weighed),  # type: ignore[arg-type]  # lazily generated
            hz=scenario.rates.frame_hz, stable_s=stable, gap_s=gap, ramp_s=ramp, lead_s=LEAD_S,
            division_kg=wb.division_kg, seed=scenario.seed, on_sent=recorder(f.id, wb.id), on_ready=ready,
            double_weigh_window_s=scenario.rates.double_weigh_window_s,
        )
        for f, wb in bridges
    ]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        ledger.close()
    visits = sum(len(r) for r in results)
    log.info("simulated %d truck visits on %d weighbridges", visits, len(bridges))
    return visits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wastestream sim", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $WS_RUN_DIR/sim")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("-l", "--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    scenario = load_scenario(args.scenario)
    run_dir = args.run_dir or settings.run_dir / "sim"

    async def supervised() -> int:
        task = asyncio.ensure_future(run_city(scenario, run_dir, args.duration, settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            log.info("stopped by signal; ptys removed")
            return 0

    asyncio.run(supervised())
    return 0

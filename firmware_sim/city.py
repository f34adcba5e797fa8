"""`wastestream sim`: play a scenario's city on simulated devices, over their real wires.

Devices: every weighbridge gets its indicator's and plate camera's ptys under `<run_dir>/dev/`;
every sorting station a Modbus TCP server on its own free loopback port (RTU stations: a pty at
`<run_dir>/dev/<station>`); every muck truck an NMEA pty (`<run_dir>/dev/<truck>-gps`) and a
Modbus TCP I/O module on a free loopback port, driven at the truck's `time_scale`.

Edge sites, one config each under `<run_dir>/edge/` (so the agents find the ports):
one per facility with weighbridges (`site_id` = facility id), one per community with stations
(`site_id` = community id), and one per truck fleet, grouped by origin (`site_id` =
`fleet-<origin>`: a fleet operator's gateway; in reality each truck's terminal is its own agent,
which is only a different grouping of the same device entries). Stations pseudonymise
households with a random key written once to `<run_dir>/edge/household.key` (never committed).

Then `<run_dir>/sim/ready` is touched and traffic runs for `--duration` s after a lead of
`LEAD_S`. `<run_dir>/sim/ledger.jsonl` records the truth, one JSON object per line, by `kind`:
`weighing` (a finished visit: what the tonnage must add up to), `deposit` (a drop, with the raw
household id: the sim's truth stays in the run dir), `station_incident` (full_bin, out_of_range,
with the bin it hit, as the station performs it), `truck` (a dump or incident, with time and
place, written when the truck's run ends).
Non-weighing lines carry `"expect_ticket": false` so tonnage readers that only look at that
flag skip them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contract.events import WasteCategory
from firmware_sim import truck as truck_sim
from firmware_sim.scenario import (
    DEFAULT_SCENARIO,
    CommunitySpec,
    FacilitySpec,
    Scenario,
    TruckSpec,
    WeighbridgeSpec,
    load_scenario,
)
from firmware_sim.sorting_station import Drop, run_station_sim
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge
from wastestream.foundation.settings import Settings, load_settings

log = logging.getLogger("firmware_sim.city")

LEAD_S = 6.0
"""Idle frames before the first truck and the first drop: time for the edge agents to start,
open their ports and take a station's baseline (an agent's first poll is its baseline)."""
STATION_COOLDOWN_S = 4.0
"""Stations keep answering after their last drop so the agents read it."""
STATION_POLL_S = 1.0


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


def free_port() -> int:
    """A free loopback TCP port (released again: the simulator binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assign_ports(scenario: Scenario) -> dict[str, int]:
    """A TCP port per Modbus TCP station and per truck I/O module, by device id."""
    ids = [st.id for c in scenario.communities for st in c.stations if st.transport == "tcp"]
    return {i: free_port() for i in ids + [t.id for t in scenario.trucks]}


def household_key(run_dir: Path) -> Path:
    """The stations' household-pseudonym key: random, once per run dir, readable by us only."""
    path = run_dir / "edge" / "household.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path


def _common(site_id: str, run_dir: Path, settings: Settings) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "mqtt": {"host": settings.mqtt_host, "port": settings.mqtt_port},
        "outbox": {"path": str(run_dir / "edge" / f"{site_id}.db"), "max_messages": 100_000},
    }


def station_site_config(community: CommunitySpec, run_dir: Path, settings: Settings,
                        ports: dict[str, int]) -> dict[str, Any]:
    """The edge agent's config for one community: its stations, over TCP or an RTU pty."""
    devices = []
    for st in community.stations:
        device: dict[str, Any] = {"id": st.id, "kind": "sorting_station", "community_id": community.id,
                                  "transport": st.transport, "unit_id": st.unit_id, "poll_s": STATION_POLL_S}
        if st.transport == "tcp":
            device["port"] = ports[st.id]
        else:
            device["serial_port"] = str(run_dir / "dev" / st.id)
        devices.append(device)
    return {**_common(community.id, run_dir, settings),
            "household_key_file": str(household_key(run_dir)), "devices": devices}


def fleet_site_id(origin: str) -> str:
    return f"fleet-{origin}"


def truck_clock_span_s(spec: TruckSpec, duration: float) -> float:
    """Simulated seconds a truck drives in a run: its GPS clock ends at the wall clock, so it
    starts this far in the past (late data, as after a long outage; never data from the future)."""
    return (LEAD_S + duration) * spec.time_scale


def fleet_site_config(scenario: Scenario, origin: str, trucks: list[TruckSpec], run_dir: Path,
                      settings: Settings, ports: dict[str, int], duration: float = 0.0) -> dict[str, Any]:
    """The edge agent's config for one fleet: each terminal's GPS pty and I/O module port.

    Report interval and I/O poll shrink with the truck's time_scale so that a dump (10 simulated
    seconds) is still seen and reported as it happens. A time-compressed truck's GPS clock starts
    in the past (see truck_clock_span_s), so the fleet's skew bound is widened by that span.
    """
    interval = scenario.rates.truck_report_interval_s
    span = max((truck_clock_span_s(t, duration) for t in trucks), default=0.0)
    return {**_common(fleet_site_id(origin), run_dir, settings),
            "clock": {"max_skew_s": round(300 + span)}, "devices": [
        {"id": t.id, "kind": "truck", "plate": t.plate, "gps_port": str(run_dir / "dev" / f"{t.id}-gps"),
         "io_port": ports[t.id], "io_poll_s": round(max(0.05, min(0.5, 2.0 / t.time_scale)), 3),
         "report_interval_s": round(max(0.5, interval / t.time_scale), 3)}
        for t in trucks
    ]}


def write_site_configs(scenario: Scenario, run_dir: Path, settings: Settings,
                       ports: dict[str, int], duration: float = 0.0) -> list[Path]:
    """Every edge site config of the city, one YAML per site under <run_dir>/edge/."""
    configs = [edge_site_config(scenario, f, run_dir, settings) for f in scenario.weighbridge_sites()]
    configs += [station_site_config(c, run_dir, settings, ports) for c in scenario.station_sites()]
    configs += [fleet_site_config(scenario, origin, trucks, run_dir, settings, ports, duration)
                for origin, trucks in scenario.fleets().items()]
    paths = []
    for config in configs:
        path = run_dir / "edge" / f"{config['site_id']}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


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

    def deposit(self, community_id: str, drop: Drop, name: str | None = None) -> None:
        self.write({
            "kind": "deposit", "site_id": community_id, "device_id": drop.station_id, "seq": drop.seq,
            "bin": drop.bin.value, "kg": drop.kg, "household": drop.household, "verdict": drop.verdict.value,
            "verdict_source": drop.verdict_source.value, "incident": drop.incident, "name": name,
            "ts": _now(), "expect_ticket": False,
        })

    def station_incident(self, community_id: str, station_id: str, kind: str, name: str | None,
                         bin_category: str | None = None) -> None:
        """Written as the station performs it; `bin_category`: the bin a full_bin / out_of_range hit."""
        self.write({"kind": "station_incident", "site_id": community_id, "device_id": station_id,
                    "incident": kind, "name": name, "bin": bin_category, "ts": _now(),
                    "expect_ticket": False})

    def truck(self, site_id: str, spec: TruckSpec, entry: truck_sim.LedgerEntry, name: str | None) -> None:
        """A dump or incident: `event` is its kind, start/end in simulated GPS time, place, loads."""
        details = msgspec.to_builtins(entry)
        details["event"] = details.pop("kind")
        self.write({"kind": "truck", "site_id": site_id, "device_id": spec.id, "plate": spec.plate,
                    "name": name, "disposal_site": spec.disposal_site, **details, "expect_ticket": False})

    def write(self, record: dict[str, Any]) -> None:
        if self._fh.closed:  # a device task finishing after a cancelled run
            return
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def station_runs(scenario: Scenario, run_dir: Path, duration: float, ports: dict[str, int],
                 ledger: Ledger) -> list[Awaitable[list[Drop]]]:
    """One simulator per station: drops from LEAD_S on, incidents `at_s` after that."""
    rate = scenario.rates.deposits_per_station_per_min * scenario.rate_scale
    runs: list[Awaitable[list[Drop]]] = []
    for community in scenario.station_sites():
        for st in community.stations:
            names: dict[str, str | None] = {i.kind: i.name for i in st.incidents}

            def on_drop(drop: Drop, site: str = community.id, names: dict[str, str | None] = names) -> None:
                ledger.deposit(site, drop, names.get(drop.incident) if drop.incident else None)

            def on_incident(kind: str, category: WasteCategory, site: str = community.id,
                            station: str = st.id, names: dict[str, str | None] = names) -> None:
                # full_bin / out_of_range, as the station performs it (a wrong-bin drop: on_drop)
                ledger.station_incident(site, station, kind, names.get(kind), category.value)

            wire: dict[str, Any] = {"tcp_port": ports[st.id]} if st.transport == "tcp" else {
                "rtu_path": run_dir / "dev" / st.id}
            runs.append(run_station_sim(
                st, community, **wire, rate_per_min=rate, seed=scenario.seed, duration_s=duration,
                on_drop=on_drop, incidents=[(i.at_s, i.kind) for i in st.incidents], warmup_s=LEAD_S,
                cooldown_s=STATION_COOLDOWN_S, on_incident=on_incident))
    return runs


async def run_truck(scenario: Scenario, spec: TruckSpec, index: int, run_dir: Path, duration: float,
                    ports: dict[str, int], ledger: Ledger) -> truck_sim.TruckLedger | None:
    """One truck for LEAD_S + `duration` real seconds at its time_scale; its dumps and incidents
    go to the ledger when the run ends (their end times and loads are known then)."""
    scale, lead = spec.time_scale, LEAD_S * spec.time_scale
    incidents = [truck_sim.Incident(kind=i.kind, at_s=i.at_s + lead, duration_s=i.duration_s,
                                    at_fraction=i.at_fraction, drop_fraction=i.drop_fraction)
                 for i in spec.incidents]
    names: dict[str, str | None] = {i.kind: i.name for i in spec.incidents}
    entries: list[truck_sim.LedgerEntry] = []

    def on_event(item: truck_sim.LedgerPoint | truck_sim.LedgerEntry) -> None:
        if isinstance(item, truck_sim.LedgerEntry):
            entries.append(item)

    try:
        return await truck_sim.run_truck_sim(
            spec, gps_path=run_dir / "dev" / f"{spec.id}-gps", io_port=ports[spec.id],
            seed=scenario.seed + index, duration_s=(LEAD_S + duration) * scale, time_scale=scale,
            incidents=incidents, on_event=on_event,
            start_utc=datetime.now(UTC) - timedelta(seconds=truck_clock_span_s(spec, duration)))
    finally:
        for entry in entries:
            ledger.truck(fleet_site_id(spec.origin), spec, entry, names.get(entry.kind))


async def run_city(scenario: Scenario, run_dir: Path, duration: float, settings: Settings) -> int:
    """Run every simulated device until `duration` seconds of traffic have been generated."""
    for sub in ("dev", "edge", "sim"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    ports = assign_ports(scenario)
    write_site_configs(scenario, run_dir, settings, ports, duration)
    ledger = Ledger(run_dir / "sim" / "ledger.jsonl")
    ramp, stable, gap = visit_pacing(scenario)
    until = time.monotonic() + LEAD_S + duration
    bridges = [(f, wb) for f in scenario.weighbridge_sites() for wb in f.weighbridges]
    others: list[Awaitable[Any]] = [
        *station_runs(scenario, run_dir, duration, ports, ledger),
        *(run_truck(scenario, t, i, run_dir, duration, ports, ledger) for i, t in enumerate(scenario.trucks)),
    ]
    pending_ready = len(bridges) + 1
    last_weighed: dict[str, float] = {}

    def ready() -> None:
        nonlocal pending_ready
        pending_ready -= 1
        if pending_ready == 0:
            (run_dir / "sim" / "ready").touch()

    async def others_ready() -> None:
        await asyncio.sleep(0.5)  # station servers and truck ptys are up within a tick of their start
        ready()

    def recorder(site_id: str, device_id: str) -> Callable[[LedgerEntry], None]:
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
        results: list[list[LedgerEntry]] = (await asyncio.gather(
            asyncio.gather(*tasks), asyncio.gather(others_ready(), *others)))[0]
    finally:
        ledger.close()
    visits = sum(len(r) for r in results)
    log.info("simulated %d truck visits on %d weighbridges, %d stations, %d trucks", visits, len(bridges),
             sum(len(c.stations) for c in scenario.communities), len(scenario.trucks))
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

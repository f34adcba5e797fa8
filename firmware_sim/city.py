"""`wastestream sim`: play a scenario's city on simulated devices, over their real wires.

Each device kind is a twin (firmware_sim/twins/, one line each in twins/registry.py) that lays out
its wires, writes the edge site configs reading them and runs its simulators; this module only
assigns ports, writes the configs, runs every twin and touches `sim/ready`. Today's twins:

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

`--replay-day DAY` (an ISO date or `yesterday`, the city's local day) first puts that whole day
of the city's traffic at its real scale into every site's edge outbox, as an edge holds it after
an outage (firmware_sim/replay/): the agents deliver it when they start; what was written is in
`<run_dir>/sim/replay.json`. `--hold` keeps the devices up, idle, after their traffic (touching
`<run_dir>/sim/traffic-done` once it is over) until the sim is stopped, so that whoever runs the
city stops the edge agents first: a planned stop, not devices vanishing under running agents.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from edge.devices.sorting_station.pseudonym import Pseudonymiser, load_key
from firmware_sim.replay.backlog import write_backlog
from firmware_sim.replay.day import plan_day, yesterday
from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.twins.base import LEAD_S, CityPlan, Ledger, free_port
from firmware_sim.twins.registry import TWINS
from firmware_sim.twins.sorting_station import household_key
from firmware_sim.twins.weighbridge import visit_pacing
from wastestream.foundation import cliutil, logs
from wastestream.foundation.city import city, city_of
from wastestream.foundation.settings import Settings, load_settings

log = logging.getLogger("firmware_sim.city")


def assign_ports(scenario: Scenario) -> dict[str, int]:
    """A free loopback TCP port per device that needs one (Modbus TCP stations, truck I/O modules)."""
    return {i: free_port() for twin in TWINS.values() for i in twin.tcp_devices(scenario)}


def write_site_configs(scenario: Scenario, run_dir: Path, settings: Settings,
                       ports: dict[str, int], duration: float = 0.0) -> list[Path]:
    """Every edge site config of the city, one YAML per site under <run_dir>/edge/."""
    plan = CityPlan(scenario, run_dir, settings, ports, duration)
    configs = [config for twin in TWINS.values() for config in twin.site_configs(plan)]
    (run_dir / "edge").mkdir(parents=True, exist_ok=True)
    paths = []
    for config in configs:
        path = run_dir / "edge" / f"{config['site_id']}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def replay_backlog(scenario: Scenario, run_dir: Path, day: date, tz: str) -> int:
    """Put the local day `day` of the city into the site outboxes (firmware_sim/replay/); rows."""
    started = time.monotonic()
    pseudonymise = Pseudonymiser(load_key(str(household_key(run_dir))))
    backlog = write_backlog(plan_day(scenario, day, tz, pseudonymise), run_dir)
    log.info("replay of %s (%s): %d messages into %d site outboxes in %.1f s (%s)", day, tz, backlog.rows,
             len(backlog.per_site), time.monotonic() - started,
             ", ".join(f"{n} {e}" for e, n in sorted(backlog.per_event.items())))
    return backlog.rows


def traffic_s(scenario: Scenario, duration: float) -> float:
    """Real seconds from the start until the last traffic is over: the lead, the run, and the
    weighbridge visit begun just before its end (one visit period), plus a second."""
    ramp, stable, gap = visit_pacing(scenario)
    period = 60.0 / (scenario.rates.visits_per_weighbridge_per_min * scenario.rate_scale)
    return LEAD_S + duration + max(period, 2 * ramp + stable + gap) + 1.0


async def run_city(scenario: Scenario, run_dir: Path, duration: float, settings: Settings, *,
                   replay_day: date | None = None, tz: str = "Asia/Shanghai", hold: bool = False) -> int:
    """Run every simulated device until `duration` seconds of traffic have been generated
    (with `hold`: then idle until cancelled); returns how many device simulators ran."""
    for sub in ("dev", "edge", "sim"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    ports = assign_ports(scenario)
    write_site_configs(scenario, run_dir, settings, ports, duration)
    if replay_day is not None:
        replay_backlog(scenario, run_dir, replay_day, tz)
    plan = CityPlan(scenario, run_dir, settings, ports, duration, asyncio.Event() if hold else None)
    ledger = Ledger(run_dir / "sim" / "ledger.jsonl")
    pending_ready = 0

    def ready() -> Callable[[], None]:
        nonlocal pending_ready
        pending_ready += 1

        def done() -> None:
            nonlocal pending_ready
            pending_ready -= 1
            if pending_ready == 0:
                (run_dir / "sim" / "ready").touch()

        return done

    without_hook = ready()  # devices that do not say when they are up: a tick after their start
    runs: dict[str, list[Awaitable[Any]]] = {k: twin.runs(plan, ledger, ready) for k, twin in TWINS.items()}

    async def others_ready() -> None:
        await asyncio.sleep(0.5)  # station servers and truck ptys are up within a tick of their start
        without_hook()
        if hold:
            await asyncio.sleep(traffic_s(scenario, duration))
            (run_dir / "sim" / "traffic-done").touch()
            log.info("traffic done; devices held until the sim is stopped")

    try:
        _, *results = await asyncio.gather(others_ready(), *(asyncio.gather(*r) for r in runs.values()))
    finally:
        ledger.close()
    done = (TWINS[kind].describe(list(r)) for kind, r in zip(runs, results, strict=True))
    log.info("simulated %s", ", ".join(done))
    return sum(len(r) for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = cliutil.parser("wastestream sim", __doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=None, help="default: $WS_CITY's scenario.yaml")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $WS_RUN_DIR/sim")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--replay-day", default=None,
                        help="first put this local day (ISO date, or 'yesterday') into the edge outboxes")
    parser.add_argument("--hold", action="store_true",
                        help="keep the devices up after the traffic until stopped (touches sim/traffic-done)")
    cliutil.add_log_level(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    settings = load_settings()
    scenario = load_scenario(args.scenario)
    run_dir = args.run_dir or settings.run_dir / "sim"
    tz = ((city_of(args.scenario) if args.scenario else None) or city()).timezone()
    replay_day = None
    if args.replay_day:
        replay_day = yesterday(tz) if args.replay_day == "yesterday" else date.fromisoformat(args.replay_day)

    async def supervised() -> int:
        task = asyncio.ensure_future(run_city(scenario, run_dir, args.duration, settings,
                                              replay_day=replay_day, tz=tz, hold=args.hold))
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

"""The city runner's edge site configs, key file, scenario incidents and ledger lines."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

from edge.config import load_config
from edge.devices.registry import DRIVERS
from edge.devices.sorting_station.station import SortingStationConfig
from edge.devices.truck.terminal import TruckTerminalConfig
from firmware_sim.city import assign_ports, write_site_configs
from firmware_sim.scenario import load_scenario
from firmware_sim.truck import LedgerEntry
from firmware_sim.twins.base import Ledger
from firmware_sim.twins.sorting_station import station_incident_record
from firmware_sim.twins.truck import truck_record
from wastestream.foundation.settings import Settings


def test_site_configs_for_all_three_kinds(tmp_path: Path) -> None:
    scenario = load_scenario()
    ports = assign_ports(scenario)
    paths = write_site_configs(scenario, tmp_path, Settings(run_dir=tmp_path), ports)
    configs = {p.stem: load_config(p) for p in paths}
    assert {"lz-jm-incinerator", "cz-wuxing", "yf-baisha", "fleet-liubei", "fleet-yufeng"} <= set(configs)
    kinds = {type(d) for c in configs.values() for d in c.devices}
    assert kinds == {d.config for d in DRIVERS.values()}  # every kind is simulated
    wuxing = configs["cz-wuxing"].devices
    assert [d.id for d in wuxing] == ["ss-cz-wuxing-1", "ss-cz-wuxing-2"]
    tcp, rtu = wuxing
    assert isinstance(tcp, SortingStationConfig) and tcp.port == ports["ss-cz-wuxing-1"]
    assert isinstance(rtu, SortingStationConfig) and rtu.transport == "rtu" and rtu.unit_id == 2
    assert rtu.serial_port == str(tmp_path / "dev" / "ss-cz-wuxing-2")
    key = Path(str(tcp.household_key_file))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    [truck] = configs["fleet-yufeng"].devices
    assert isinstance(truck, TruckTerminalConfig) and truck.site_id == "fleet-yufeng"
    assert truck.report_interval_s < 1 and truck.io_poll_s <= 0.1  # scaled with time_scale 40
    assert len(set(ports.values())) == len(ports)


def test_liuzhou_has_the_demo_incidents() -> None:
    scenario = load_scenario()
    truck_kinds = {i.kind for t in scenario.trucks for i in t.incidents}
    station_kinds = {i.kind for c in scenario.communities for s in c.stations for i in s.incidents}
    assert {"dump_outside", "uncovered"} <= truck_kinds and {"wrong_bin", "full_bin"} <= station_kinds
    assert all(i.name for t in scenario.trucks for i in t.incidents)
    assert all(t.time_scale > 1 for t in scenario.trucks)


def test_ledger_kinds_do_not_count_as_tickets(tmp_path: Path) -> None:
    scenario = load_scenario()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    entry = LedgerEntry(kind="dump_outside", start_s=40, start_ts=datetime.now(UTC), lat=24.3, lon=109.4,
                        load_before_kg=13800, load_after_kg=5520)
    ledger.write(truck_record("fleet-yufeng", scenario.trucks[1], entry, "z8817-dump-outside"))
    ledger.write(station_incident_record("yf-baisha", "ss-yf-baisha-1", "full_bin", "baisha-full-bin"))
    ledger.close()
    lines = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["truck", "station_incident"]
    assert (lines[0]["event"], lines[0]["lat"], lines[0]["load_after_kg"]) == ("dump_outside", 24.3, 5520)
    assert all(r["expect_ticket"] is False for r in lines)

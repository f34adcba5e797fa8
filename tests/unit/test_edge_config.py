"""Site config: the device union by `kind`, site-level defaults, and the agent's pieces around it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import decode
from contract.events import DeviceStatus, WasteCategory, WeighingFlag
from edge.agent import Agent
from edge.clock import ClockGuard
from edge.config import ConfigError, load_config, parse_config
from edge.devices.sorting_station import registers as reg
from edge.devices.sorting_station.pseudonym import Pseudonymiser, generate_key
from edge.devices.sorting_station.registers import decode_block
from edge.devices.sorting_station.station import SortingStationConfig, StoredTracker
from edge.devices.truck.terminal import TruckTerminalConfig
from edge.devices.weighbridge.port import WeighbridgePort
from edge.devices.weighbridge.workflow import Ticket, WeighbridgeDevice
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import StationSim

NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def site(tmp_path: Path, *devices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"site_id": "s1", "outbox": {"path": str(tmp_path / "o.db")}, "devices": list(devices), **extra}


STATION = {"id": "ss-1", "kind": "sorting_station", "community_id": "c1", "port": 1502}
TRUCK = {"id": "trk-1", "kind": "truck", "plate": "桂BZ8801", "gps_port": "/dev/ttyUSB0", "io_port": 1503}


def test_weighbridge_kind_defaults_and_all_kinds_decode(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/ttyS0"}, STATION, TRUCK,
                            household_key_file="/etc/ws/household.key"))
    wb, st, trk = cfg.devices
    assert isinstance(wb, WeighbridgeDevice) and wb.kind == "weighbridge"
    assert isinstance(st, SortingStationConfig) and st.site_id == "s1" and st.kind == "sorting_station"
    assert st.household_key_file == "/etc/ws/household.key"  # inherited from the site
    assert isinstance(trk, TruckTerminalConfig) and trk.site_id == "s1" and trk.plate == "桂BZ8801"
    assert cfg.status_interval_s == 60 and cfg.clock.max_skew_s == 300
    assert cfg.mqtt.delivery == "pipeline"  # kept until the bridge confirms Kafka has it


def test_delivery_mode_is_checked(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "p"}, mqtt={"delivery": "broker"}))
    assert cfg.mqtt.delivery == "broker"
    with pytest.raises(ConfigError, match=r"\$.mqtt.delivery"):
        parse_config(site(tmp_path, {"id": "wb-1", "port": "p"}, mqtt={"delivery": "pigeon"}))
    with pytest.raises(ConfigError, match=r"\$.mqtt.confirm_timeout_s"):
        parse_config(site(tmp_path, {"id": "wb-1", "port": "p"}, mqtt={"confirm_timeout_s": 0}))


def test_station_key_of_its_own_wins(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {**STATION, "household_key_env": "WS_KEY"},
                            household_key_file="/etc/ws/household.key"))
    [st] = cfg.devices
    assert isinstance(st, SortingStationConfig)
    assert (st.household_key_file, st.household_key_env) == (None, "WS_KEY")


@pytest.mark.parametrize(("device", "where"), [
    ({"id": "x", "kind": "bogus", "port": "p"}, "$.devices[0].kind"),
    ({"id": "x", "kind": ["sorting_station"], "port": "p"}, "$.devices[0].kind"),  # unhashable: no crash
    ({**STATION, "site_id": "other"}, "$.devices[0].site_id"),
    ({**STATION, "household_key_file": "k", "colour": "red"}, "$.devices[0]"),
    ({**TRUCK, "io_unit_id": 300}, "$.devices[0].io_unit_id"),
    ({"id": "ss-2", "kind": "sorting_station", "community_id": "c"}, "household_key"),  # no key anywhere
])
def test_bad_devices_name_the_key(tmp_path: Path, device: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(site(tmp_path, device), "site.yaml")
    assert where in str(err.value) and "site.yaml" in str(err.value)


def test_yaml_clock_bounds(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site_id: s1
outbox: {{path: {tmp_path / 'o.db'}}}
status_interval_s: 5
clock: {{max_skew_s: 60, not_before: 2025-01-01T00:00:00Z}}
devices:
  - {{id: wb-1, port: /dev/ttyS0}}
""")
    cfg = load_config(path)
    assert cfg.clock.max_skew_s == 60 and cfg.clock.not_before == datetime(2025, 1, 1, tzinfo=UTC)


def test_clock_guard_bounds_and_summary() -> None:
    guard = ClockGuard(300, datetime(2024, 1, 1, tzinfo=UTC))
    assert not guard.check("d", NOW + timedelta(seconds=299), now=NOW)
    assert guard.check("d", NOW + timedelta(seconds=301), now=NOW)
    assert guard.check("d", NOW - timedelta(hours=1), now=NOW)
    assert guard.check("d", datetime(1970, 1, 1, 0, 5, tzinfo=UTC), now=datetime(1970, 1, 1, tzinfo=UTC))
    clock = guard.get("d")
    assert clock.skewed == 3 and clock.offset_s == 300.0
    assert guard.summary("d") is not None and guard.summary("other") is None


def test_weighing_with_skewed_clock_is_flagged(tmp_path: Path) -> None:
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/null-x"}))
    agent = Agent(cfg)
    [device] = cfg.devices
    assert isinstance(device, WeighbridgeDevice)
    port = WeighbridgePort(device, agent.context(device))
    ticket = Ticket(plate="桂B1", gross_kg=20000, tare_kg=10000, net_kg=10000,
                    category=WasteCategory.RESIDUAL, origin="x", stable=True, flags=(),
                    ts=datetime.now(UTC), at=0.0)
    port.emit(ticket)
    port.emit(replace(ticket, ts=datetime.now(UTC) + timedelta(hours=2)))
    flags = [decode(e.payload).flags for e in agent.outbox.pending()]  # type: ignore[union-attr]
    assert flags == [(), (WeighingFlag.CLOCK_SKEW,)]


def test_station_cursor_is_stored_with_its_deposits(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "k").write_text(key)
    cfg = parse_config(site(tmp_path, STATION, household_key_file=str(tmp_path / "k")))
    [device] = cfg.devices
    assert isinstance(device, SortingStationConfig)
    community = CommunitySpec(id="c1", name="c", district="d", households=9)
    sim = StationSim(StationSpec(id="ss-1"), community, seed=1)
    agent = Agent(cfg)
    tracker = StoredTracker(agent.context(device), device, Pseudonymiser(key.encode()))
    # the baseline: 4 bin levels, no deposits, all in the outbox; nothing for the driver to emit
    assert tracker.update(decode_block(sim.registers), datetime.now(UTC)) == []
    for _ in range(3):
        sim.random_drop()
    tracker.update(decode_block(sim.registers), datetime.now(UTC))
    kinds = [decode(e.payload).event for e in agent.outbox.pending()]
    assert kinds.count("deposit") == 3 and kinds.count("bin_level") >= 4
    assert agent.outbox.get_state("cursor:ss-1") == f"{sim.registers[reg.ADDR_EPOCH]}:{sim.counter}"

    # a restarted agent resumes from the stored cursor: drops made meanwhile, none twice
    sim.random_drop()
    agent.outbox.close()
    again = Agent(cfg)
    resumed = StoredTracker(again.context(device), device, Pseudonymiser(key.encode()))
    before = len(again.outbox.pending(limit=1000))
    resumed.update(decode_block(sim.registers), datetime.now(UTC))
    new = [decode(e.payload) for e in again.outbox.pending(limit=1000)[before:]]
    assert [e.event for e in new].count("deposit") == 1


def test_heartbeat_covers_every_device_and_the_agent(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(generate_key())
    cfg = parse_config(site(tmp_path, {"id": "wb-1", "port": "/dev/null-x"}, STATION, TRUCK,
                            household_key_file=str(tmp_path / "k")))
    agent = Agent(cfg)
    for device in ("ss-1", "trk-1"):
        agent.health[device].ok()
    items = agent.status_batch(heartbeat=True)
    statuses = [decode(build(f"{dev}:1:1", 1)) for dev, _, build in items]
    assert all(isinstance(s, DeviceStatus) for s in statuses)
    assert {s.device_id for s in statuses} == {"ss-1", "trk-1", "s1-edge"}  # wb-1: port not opened yet
    assert agent.status_batch(heartbeat=False) == []  # nothing changed since

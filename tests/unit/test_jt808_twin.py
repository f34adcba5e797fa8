"""The JT/T 808 twin: the demo's switch, the fleet sites it writes, its points through each profile."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from edge.config import parse_config
from edge.devices.jt808 import messages as m
from edge.devices.jt808.driver import Jt808Config
from edge.devices.jt808.profile import load_profile, read
from firmware_sim.city import assign_ports, write_site_configs
from firmware_sim.scenario import load_scenario
from firmware_sim.twins.jt808 import Signals, location, with_terminals
from wastestream.foundation.city import city
from wastestream.foundation.settings import Settings


def test_with_terminals_switches_every_truck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_RUN_DIR", str(tmp_path))
    source = city("liuzhou").scenario
    assert with_terminals(source, None) == source
    for terminal in ("nmea", "jt808"):
        scenario = load_scenario(with_terminals(source, terminal))
        assert {t.terminal for t in scenario.trucks} == {terminal}
        paths = write_site_configs(scenario, tmp_path / terminal, Settings(run_dir=tmp_path),
                                   assign_ports(scenario))
        kinds = {d["kind"] for p in paths for d in yaml.safe_load(p.read_text())["devices"]}
        assert ("jt808" in kinds) is (terminal == "jt808") and ("truck" in kinds) is (terminal == "nmea")


def test_a_mixed_fleet_gets_two_sites(tmp_path: Path) -> None:
    scenario = load_scenario()  # Liuzhou: z8801 (liubei) on JT/T 808, z8817 (yufeng) on NMEA
    paths = {p.stem for p in write_site_configs(scenario, tmp_path, Settings(run_dir=tmp_path),
                                                 assign_ports(scenario))}
    assert {"fleet-liubei", "fleet-yufeng"} <= paths and not any(p.endswith("-jt808") for p in paths)
    raw = yaml.safe_load((tmp_path / "edge" / "fleet-liubei.yaml").read_text(encoding="utf-8"))
    [dev] = parse_config(raw).devices
    assert isinstance(dev, Jt808Config) and dev.plate == "桂BZ8801" and dev.full_load_kg == 14500


@pytest.mark.parametrize("name", ["ext-signal", "status-word"])
def test_the_twin_puts_signals_where_the_profile_reads_them(name: str) -> None:
    profile = load_profile(name)
    for lid, bed, fraction in ((True, False, 1.0), (False, True, 0.5), (True, True, 0.0)):
        loc = location(profile, ts=datetime(2026, 12, 7, 12, 0, tzinfo=UTC), lat=-24.3, lon=109.4,
                       speed_kmh=30, heading=359.6, signals=Signals(lid, bed, fraction, 7000 * fraction))
        back = m.decode_location(m.encode_location(loc))
        assert isinstance(back, m.Location) and (back.lat, back.direction_deg) == (-24.3, 0)
        r = read(profile, back)
        assert (r.cover_closed, r.bed_raised) == (lid, bed)
        assert r.load == {1.0: "full", 0.5: "half", 0.0: "empty"}[fraction]

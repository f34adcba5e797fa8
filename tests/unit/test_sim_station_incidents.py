"""The simulator's ledger names the bin a station incident hit (the `bin_full` alert's subject)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from contract.events import WasteCategory
from firmware_sim.scenario import CommunitySpec, StationSpec
from firmware_sim.sorting_station import IncidentKind, StationSim, _simulate
from firmware_sim.twins.base import Ledger
from firmware_sim.twins.sorting_station import station_incident_record


def test_full_bin_incident_reports_the_bin_it_filled() -> None:
    sim = StationSim(StationSpec(id="ss-1"), CommunitySpec(id="c-1", name="c", district="d", households=9),
                     seed=3)
    seen: list[tuple[IncidentKind, WasteCategory, float]] = []

    async def run() -> None:
        await _simulate(sim, rate_per_min=0.001, duration_s=0.2, on_drop=None, incidents=[(0.0, "full_bin")],
                        warmup_s=0.0, collect_delay_s=5.0, stop=asyncio.Event(),
                        on_incident=lambda kind, bin_: seen.append((kind, bin_, sim.fill_pct(bin_))))

    asyncio.run(run())
    assert len(seen) == 1
    kind, bin_, fill = seen[0]
    assert (kind, fill) == ("full_bin", 100.0)
    assert [c for c in WasteCategory if c in sim.in_bin_g and sim.fill_pct(c) == 100.0] == [bin_]


def test_ledger_records_the_incident_bin(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.write(station_incident_record("c-1", "ss-1", "full_bin", "c-full", WasteCategory.RESIDUAL.value))
    ledger.close()
    record = json.loads((tmp_path / "ledger.jsonl").read_text())
    assert (record["kind"], record["device_id"], record["bin"]) == ("station_incident", "ss-1", "residual")

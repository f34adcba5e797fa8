"""Sorting-station twin: a Modbus server per station (TCP on a free port, or RTU on a pty) speaking the
station's vendor profile (`profile` in the scenario, the same in its site config), one edge site per
community; stations pseudonymise households with a random key written once to
`<run_dir>/edge/household.key` (never committed)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from contract.events import WasteCategory
from firmware_sim.scenario import CommunitySpec, Scenario
from firmware_sim.sorting_station import Drop, run_station_sim
from firmware_sim.twins.base import LEAD_S, CityPlan, Ledger, Ready, Twin, now_iso

STATION_COOLDOWN_S = 4.0
"""Stations keep answering after their last drop so the agents read it."""
STATION_POLL_S = 1.0
HELD_S = 86_400.0
"""A held city's stations answer until the hold is set or the sim stops (CityPlan.hold)."""


def household_key(run_dir: Path) -> Path:
    """The stations' household-pseudonym key: random, once per run dir, readable by us only."""
    path = run_dir / "edge" / "household.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path


def deposit_record(community_id: str, drop: Drop, name: str | None = None) -> dict[str, Any]:
    """A drop, with the raw household id: the sim's truth stays in the run dir."""
    return {
        "kind": "deposit", "site_id": community_id, "device_id": drop.station_id, "seq": drop.seq,
        "bin": drop.bin.value, "kg": drop.kg, "household": drop.household, "verdict": drop.verdict.value,
        "verdict_source": drop.verdict_source.value, "incident": drop.incident, "name": name,
        "ts": now_iso(), "expect_ticket": False,
    }


def station_incident_record(community_id: str, station_id: str, kind: str, name: str | None,
                            bin_category: str | None = None) -> dict[str, Any]:
    """Written as the station performs it; `bin_category`: the bin a full_bin / out_of_range hit."""
    return {"kind": "station_incident", "site_id": community_id, "device_id": station_id,
            "incident": kind, "name": name, "bin": bin_category, "ts": now_iso(), "expect_ticket": False}


def station_site_config(plan: CityPlan, community: CommunitySpec) -> dict[str, Any]:
    """The edge agent's config for one community: its stations, over TCP or an RTU pty."""
    devices = []
    for st in community.stations:
        device: dict[str, Any] = {"id": st.id, "kind": "sorting_station", "community_id": community.id,
                                  "transport": st.transport, "unit_id": st.unit_id, "poll_s": STATION_POLL_S,
                                  "profile": st.profile}
        if st.transport == "tcp":
            device["port"] = plan.ports[st.id]
        else:
            device["serial_port"] = str(plan.dev(st.id))
        devices.append(device)
    return {**plan.site(community.id), "household_key_file": str(household_key(plan.run_dir)),
            "devices": devices}


class SortingStationTwin(Twin):
    kind = "sorting_station"

    def tcp_devices(self, scenario: Scenario) -> list[str]:
        return [st.id for c in scenario.communities for st in c.stations if st.transport == "tcp"]

    def site_configs(self, plan: CityPlan) -> list[dict[str, Any]]:
        return [station_site_config(plan, c) for c in plan.scenario.station_sites()]

    def runs(self, plan: CityPlan, ledger: Ledger, ready: Ready) -> list[Awaitable[Any]]:
        """One simulator per station: drops from LEAD_S on, incidents `at_s` after that."""
        scenario = plan.scenario
        rate = scenario.rates.deposits_per_station_per_min * scenario.rate_scale
        runs: list[Awaitable[list[Drop]]] = []
        for community in scenario.station_sites():
            for st in community.stations:
                names: dict[str, str | None] = {i.kind: i.name for i in st.incidents}

                def on_drop(drop: Drop, site: str = community.id, names: dict[str, str | None] = names
                            ) -> None:
                    name = names.get(drop.incident) if drop.incident else None
                    ledger.write(deposit_record(site, drop, name))

                def on_incident(kind: str, category: WasteCategory, site: str = community.id,
                                station: str = st.id, names: dict[str, str | None] = names) -> None:
                    # full_bin / out_of_range, as the station performs it (a wrong-bin drop: on_drop)
                    record = station_incident_record(site, station, kind, names.get(kind), category.value)
                    ledger.write(record)

                wire: dict[str, Any] = {"tcp_port": plan.ports[st.id]} if st.transport == "tcp" else {
                    "rtu_path": plan.dev(st.id)}
                runs.append(run_station_sim(
                    st, community, **wire, rate_per_min=rate, seed=scenario.seed, duration_s=plan.duration,
                    on_drop=on_drop, incidents=[(i.at_s, i.kind) for i in st.incidents], warmup_s=LEAD_S,
                    cooldown_s=STATION_COOLDOWN_S if plan.hold is None else HELD_S, stop=plan.hold,
                    on_incident=on_incident, profile=st.profile))
        return runs

    def describe(self, results: list[Any]) -> str:
        return f"{len(results)} stations"

"""Issue 11 finding 5: device ids are unique within a site only, and the examples use `wb-1`
everywhere. Two sites each sending `wb-1` with the SAME msg ids must keep apart: state, dedup
marks, alert ids and manifest event ids are keyed by site and device.

The agents' batch steps run on the fake tables of test_agents_batch (each record on its own)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.events import (
    Deposit,
    DeviceState,
    DeviceStatus,
    Direction,
    Verdict,
    VerdictSource,
    WasteCategory,
    Weighing,
    WeighingFlag,
)
from stream.agents import device_health, manifest, sorting, tonnage
from stream.agents.manifest_state import Watermark
from stream.agents.tonnage_points import decode_totals
from stream.dedup import WeighbridgeState as TonnageState
from tests.unit.test_agents_batch import Harness, events

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
SITES = ("site-a", "site-b")


def ticket(site: str, seq: int) -> Weighing:
    return Weighing(msg_id=f"wb-1:1772323200:{seq}", device_id="wb-1", site_id=site,
                    ts=T0 + timedelta(minutes=seq), ticket_id=f"T{seq}", plate="沪A12345",
                    direction=Direction.INBOUND, gross_kg=30000.0, tare_kg=12000.0, net_kg=18000.0,
                    category=WasteCategory.KITCHEN, origin="district-3",
                    flags=(WeighingFlag.DOUBLE_WEIGHING,) if seq == 1 else ())


class _Topic:
    """site_totals_topic: records what is forwarded; Kafka "has it" at once."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_tonnage_counts_both_sites_wb_1_with_the_same_msg_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, tonnage, "device_state")
    totals = _Topic()
    sent_manifest: list[str] = []

    async def manifest_soon(evs: list[dict[str, Any]]) -> list[Any]:
        sent_manifest.extend(e["id"] for e in evs)
        return []

    monkeypatch.setattr(tonnage, "site_totals_topic", totals)
    monkeypatch.setattr(manifest, "send_events_soon", manifest_soon)
    monkeypatch.setattr(manifest, "WATERMARK", Watermark())
    tickets = [ticket(site, seq) for seq in (1, 2, 3) for site in SITES]
    before = (tonnage.Counters.processed, tonnage.Counters.duplicates)
    h.run(tonnage.process_batch, events("ws.weighings", [*tickets, tickets[0]]))  # + one true repeat
    assert (tonnage.Counters.processed - before[0], tonnage.Counters.duplicates - before[1]) == (6, 1)

    states = {k: TonnageState.from_json(v) for k, v in h.tables["device_state"].items()}
    assert sorted(states) == ["site-a/wb-1", "site-b/wb-1"]
    for site in SITES:
        days = states[f"{site}/wb-1"].days
        assert [n for _, n in days.values()] == [3] and all(k.startswith(f"{site}|") for k in days)
    alerts = h.of("alert")
    assert len(alerts) == 2 and len(set(alerts)) == 2  # one double-weighing alert per site, own ids
    assert len(sent_manifest) == 7 and len(set(sent_manifest)) == 6  # the repeat re-sends its id
    assert sorted({t.site for value in totals.sent for t in decode_totals(value)}) == ["site-a", "site-b"]
    weighings = [p for p in h.of("point") if p.measurement == "weighing"]
    assert {(p.tags["site"], p.tags["device"]) for p in weighings} == {(s, "wb-1") for s in SITES}


def test_sorting_keeps_two_sites_stations_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, sorting, "station_state")
    deps = [Deposit(msg_id=f"ss-1:1:{seq}", device_id="ss-1", site_id=site, ts=T0 + timedelta(minutes=seq),
                    community_id="c-1", bin=WasteCategory.KITCHEN, kg=1.0, household="a1b2c3d4e5f6a7b8",
                    verdict=Verdict.CORRECT, verdict_source=VerdictSource.CAMERA)
            for seq in (1, 2) for site in SITES]
    before = sorting.Counters.processed
    h.run(sorting.process_deposits, events("ws.deposits", deps))
    assert sorting.Counters.processed - before == 4
    assert sorted(h.of("write")) == ["site-a/ss-1", "site-b/ss-1"]
    for value in h.tables["station_state"].values():
        assert value["last"] == [1, 2] and sum(c[0] for c in value["days"].values()) == 2


def test_device_health_alerts_each_site_s_device_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch, device_health, "health_table")
    monkeypatch.setattr(device_health, "WATERMARK", Watermark())
    statuses = [DeviceStatus(msg_id=f"wb-1:1:{seq}", device_id="wb-1", site_id=site, ts=T0,
                             state=DeviceState.ONLINE if seq == 1 else DeviceState.OFFLINE)
                for seq in (1, 2) for site in SITES]
    h.run(device_health.process, events("ws.device-status", statuses, partition=0))
    assert len(set(h.of("alert"))) == 2  # device_offline for each site, not one dropped as known
    assert sorted(h.of("write")) == ["site-a/wb-1", "site-b/wb-1"]

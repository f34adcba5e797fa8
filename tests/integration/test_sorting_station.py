"""Sorting station end to end over real Modbus: the simulator as a pymodbus TCP server on loopback
and as an RTU server on a real pty, the driver polling it, for each vendor profile (the reference
map and hb-sc200); every drop arrives exactly once."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import msgspec
import pytest

from contract.codec import decode, encode
from contract.events import BinLevel, Deposit, Envelope
from edge.devices.sorting_station.pseudonym import Pseudonymiser, generate_key
from edge.devices.sorting_station.station import SortingStationConfig, run_sorting_station
from firmware_sim.scenario import load_scenario
from firmware_sim.sorting_station import Drop, run_station_sim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_both(
    cfg: SortingStationConfig, sim_kwargs: dict[str, object]
) -> tuple[list[Drop], list[Envelope]]:
    """Start the driver first (it retries until the simulator is up), run the simulator, stop the driver."""
    events: list[Envelope] = []

    async def emit(event: Envelope) -> None:
        events.append(event)

    stop = asyncio.Event()
    driver = asyncio.create_task(run_sorting_station(cfg, emit, stop))
    ledger = await run_station_sim(**sim_kwargs)  # type: ignore[arg-type]
    assert not driver.done(), "the driver stopped on its own"
    stop.set()
    await asyncio.wait_for(driver, 5)
    return ledger, events


@pytest.mark.parametrize(("transport", "profile"), [
    ("tcp", "wastestream-v1"), ("rtu", "wastestream-v1"), ("tcp", "hb-sc200"), ("rtu", "hb-sc200")])
def test_every_drop_arrives_once(transport: str, profile: str, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.devices.sorting_station")
    scenario = load_scenario()
    community = scenario.communities[0]
    spec = next(s for s in community.stations if s.transport == transport)
    key = generate_key()
    key_file = tmp_path / "household.key"
    key_file.write_text(key)
    port, tty = free_port(), tmp_path / f"{spec.id}.tty"
    cfg = SortingStationConfig(
        id=spec.id, site_id="lz-cz-wuxing", community_id=community.id, transport=spec.transport,
        port=port, serial_port=str(tty), unit_id=spec.unit_id, poll_s=0.1, timeout_s=1.0,
        household_key_file=str(key_file), fill_step_pct=5.0, heartbeat_s=1.0, profile=profile)
    sim_kwargs = {
        "spec": spec, "community": community, "rate_per_min": 240, "seed": 7, "duration_s": 5.0,
        "warmup_s": 1.5, "cooldown_s": 1.0, "collect_delay_s": 1.5,
        "incidents": [(0.5, "wrong_bin"), (1.0, "out_of_range"), (2.0, "full_bin")],
        "tcp_port": port if transport == "tcp" else None,
        "rtu_path": tty if transport == "rtu" else None, "profile": profile,
    }
    ledger, events = asyncio.run(run_both(cfg, sim_kwargs))

    pseudo = Pseudonymiser(key.encode())
    deposits = [e for e in events if isinstance(e, Deposit)]
    assert len(ledger) >= 10
    assert [(d.bin, d.kg, d.household, d.verdict, d.verdict_source) for d in deposits] == [
        (d.bin, d.kg, pseudo(d.household), d.verdict, d.verdict_source) for d in ledger]
    assert any(d.incident == "wrong_bin" for d in ledger)
    assert round(sum(d.kg for d in deposits), 3) == round(sum(d.kg for d in ledger), 3)
    assert all(d.community_id == community.id and d.device_id == spec.id for d in deposits)
    assert not any(d.household in str(events) for d in ledger), "a raw household id left the edge"

    levels = [e for e in events if isinstance(e, BinLevel)]
    assert {b.bin for b in levels} == {"kitchen", "recyclable", "hazardous", "residual"}
    full = [b for b in levels if b.fill_pct == 100.0]
    assert full, "the full_bin incident was not seen"
    after = [b.fill_pct for b in levels[levels.index(full[0]):] if b.bin == full[0].bin]
    assert min(after) < 100.0, "the full bin was never seen emptied"

    for event in events:  # valid contract messages once the outbox gives them an id
        real = msgspec.structs.replace(event, msg_id=f"{spec.id}:1:{id(event)}")
        assert decode(encode(real)) == real

    reasons = [r.getMessage() for r in caplog.records]
    raw = "1500" if profile == "wastestream-v1" else "150"  # 0.1 % steps in a u16, or a float of %
    assert any(f"fill register {raw} (150.0 %) out of range" in r for r in reasons), reasons

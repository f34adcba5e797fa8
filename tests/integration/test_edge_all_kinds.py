"""One edge agent, all three device kinds on their simulators over the real wires, to Mosquitto.

Weighbridge on a pty, a sorting station over Modbus TCP and one over RTU on a pty, a muck truck
(NMEA pty + Modbus TCP I/O) at 40x time: every drop arrives once as a pseudonymised deposit, the
dump is reported, the weighing is right, and each device has device_status heartbeats; the
truck's compressed GPS clock runs ahead and is reported as a clock offset.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import decode
from contract.events import BinLevel, Deposit, DeviceStatus, Envelope, TruckTelemetry, Weighing
from edge.agent import run_agent
from edge.config import parse_config
from edge.devices.sorting_station.pseudonym import Pseudonymiser, generate_key
from firmware_sim.scenario import CommunitySpec, StationSpec, TruckSpec
from firmware_sim.sorting_station import Drop, run_station_sim
from firmware_sim.truck import TruckLedger, run_truck_sim
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge
from wastestream.foundation.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SETTINGS = load_settings()

TRUCK = msgspec.convert({
    "id": "trk-1", "plate": "桂BZ8801", "origin": "liubei", "disposal_site": "xn-liubei",
    "route": [[24.3660, 109.4050], [24.3750, 109.4010], [24.3850, 109.3990], [24.3920, 109.3990]],
}, TruckSpec)
COMMUNITY = msgspec.convert({"id": "cz-test", "name": "t", "district": "chengzhong", "households": 50},
                            CommunitySpec)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("live_services")  # the real Mosquitto, started by deploy/local
def test_one_agent_all_kinds(tmp_path: Path) -> None:
    site = f"it-all-{uuid.uuid4().hex[:6]}"
    key = generate_key()
    (tmp_path / "household.key").write_text(key + "\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    tcp_port, io_port = free_port(), free_port()
    config = parse_config({
        "site_id": site,
        "mqtt": {"host": SETTINGS.mqtt_host, "port": SETTINGS.mqtt_port, "session_expiry_s": 60,
                 "delivery": "broker"},  # the edge alone: the broker's PUBACK is the delivery
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "household_key_file": str(tmp_path / "household.key"),
        "status_interval_s": 2,
        "clock": {"max_skew_s": 30},
        "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000}],
        "devices": [
            {"id": "wb-1", "port": str(dev / "wb-1"), "anpr_port": str(dev / "wb-1-anpr"),
             "stable": {"tolerance_kg": 20, "hold_s": 0.8}},
            {"id": "ss-tcp", "kind": "sorting_station", "community_id": COMMUNITY.id, "port": tcp_port,
             "poll_s": 0.2},
            {"id": "ss-rtu", "kind": "sorting_station", "community_id": COMMUNITY.id, "transport": "rtu",
             "serial_port": str(dev / "ss-rtu"), "unit_id": 2, "poll_s": 0.3},
            {"id": TRUCK.id, "kind": "truck", "plate": TRUCK.plate, "gps_port": str(dev / "gps"),
             "io_port": io_port, "io_poll_s": 0.05, "report_interval_s": 0.5, "fix_stale_s": 1.0},
        ],
    })

    received: list[Envelope] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-sub-{site}", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, msg: received.append(decode(bytes(msg.payload)))
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    sub.subscribe(f"ws/v1/{site}/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)

    drops: list[Drop] = []

    async def scenario() -> tuple[list[LedgerEntry], TruckLedger]:
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(config, stop=stop, flush_timeout=5))
        stations = [
            run_station_sim(StationSpec(id="ss-tcp", unit_id=1), COMMUNITY, tcp_port=tcp_port,
                            rate_per_min=60, seed=1, duration_s=12, warmup_s=3, cooldown_s=2,
                            on_drop=drops.append, incidents=[(4.0, "wrong_bin"), (5.0, "full_bin")]),
            run_station_sim(StationSpec(id="ss-rtu", transport="rtu", unit_id=2), COMMUNITY,
                            rtu_path=dev / "ss-rtu", rate_per_min=40, seed=2, duration_s=12, warmup_s=3,
                            cooldown_s=2, on_drop=drops.append),
        ]
        station_tasks = [asyncio.create_task(run) for run in stations]
        truck = run_truck_sim(TRUCK, gps_path=dev / "gps", io_port=io_port, seed=3, time_scale=40)
        wb = run_weighbridge(dev / "wb-1", dev / "wb-1-anpr", "toledo",
                             [TruckVisit("桂B12345", 28000, tare_kg=12000, rated_gross_kg=31000)],
                             lead_s=3, stable_s=2.0, ramp_s=0.8, gap_s=1.0)
        tickets, truck_ledger = await asyncio.gather(wb, truck)
        await asyncio.gather(*station_tasks)
        await asyncio.sleep(3)  # the last polls, a heartbeat
        stop.set()
        await asyncio.wait_for(agent, 20)
        return tickets, truck_ledger

    try:
        tickets, truck_ledger = asyncio.run(scenario())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(isinstance(e, Deposit) for e in received) < len(drops):
            time.sleep(0.2)
    finally:
        sub.loop_stop()
        sub.disconnect()

    unique = {e.msg_id: e for e in received}
    events = list(unique.values())
    by_type = Counter(type(e).__name__ for e in events)
    print(f"\nall kinds: {dict(by_type)}; drops {len(drops)}, MQTT duplicates {len(received) - len(unique)}")

    pseudonym = Pseudonymiser(key.encode())
    deposits = [e for e in events if isinstance(e, Deposit)]
    assert sorted((d.device_id, d.bin, d.kg, d.household, d.verdict) for d in deposits) == sorted(
        (d.station_id, d.bin, d.kg, pseudonym(d.household), d.verdict) for d in drops)
    assert not {d.household for d in drops} & {d.household for d in deposits}  # never raw
    assert any(isinstance(e, BinLevel) and e.fill_pct == 100.0 and e.device_id == "ss-tcp" for e in events)

    [weighing] = [e for e in events if isinstance(e, Weighing)]
    assert (weighing.net_kg, weighing.plate) == (tickets[0].net_kg, "桂B12345")

    telemetry = [e for e in events if isinstance(e, TruckTelemetry)]
    assert len(truck_ledger.of_kind("dump")) == 1
    assert any(t.bed_raised for t in telemetry) and any(t.load_kg < 1000 for t in telemetry)  # dumped

    statuses = [e for e in events if isinstance(e, DeviceStatus)]
    for device in ("wb-1", "ss-tcp", "ss-rtu", TRUCK.id, f"{site}-edge"):
        assert any(s.device_id == device and s.state.value == "online" for s in statuses), device
    truck_offsets = [s.clock_offset_s for s in statuses if s.device_id == TRUCK.id and s.clock_offset_s]
    assert truck_offsets and max(truck_offsets) > 30  # 40x GPS time runs ahead of the host clock
    assert any(s.last_error and "clock" in s.last_error for s in statuses if s.device_id == TRUCK.id)
    for device, seqs in _seqs(events).items():  # the agent's own online/will bypass the outbox
        assert device == f"{site}-edge" or seqs == sorted(seqs), device


def _seqs(events: list[Envelope]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for e in events:
        out.setdefault(e.device_id, []).append(int(e.msg_id.rsplit(":", 1)[1]))
    return out

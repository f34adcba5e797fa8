"""JT/T 808 terminals -> the edge agent's gateway -> outbox -> the real Mosquitto.

Two terminals (a 2013 and a 2019 header) of one site report while the site's uplink is down (the
agent points at a dead port): every report is acked, because the outbox holds it. The agent is
stopped and started again with the broker reachable: every point reaches the broker once, on
its own device's topic, then the terminals reconnect (one back-fills what it could not send
while the gateway was down) and an unregistered terminal is refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import decode
from contract.events import DeviceStatus, Envelope, TruckTelemetry
from edge.agent import run_agent
from edge.config import parse_config
from edge.devices.jt808.profile import load_profile
from firmware_sim.twins.base import free_port
from firmware_sim.twins.jt808 import Signals, TerminalSim, location, wait_listening
from wastestream.foundation.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SETTINGS = load_settings()
PROFILE = load_profile("ext-signal")
TRUCKS = {"t13": ("13912345678", "桂B12345", False), "t19": ("13987654321", "桂B54321", True)}


def site_config(site: str, tmp: Path, gateway: int, mqtt_port: int) -> Any:
    return parse_config({
        "site_id": site,
        "mqtt": {"host": SETTINGS.mqtt_host, "port": mqtt_port, "session_expiry_s": 60, "delivery": "broker"},
        "outbox": {"path": str(tmp / "outbox.db")},
        "status_interval_s": 1,
        "clock": {"max_skew_s": 3600},
        "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000}],
        "devices": [{"id": dev, "kind": "jt808", "phone": phone, "plate": plate, "profile": "ext-signal",
                     "listen": f"127.0.0.1:{gateway}", "report_interval_s": 2,
                     **({} if plate == "桂B12345" else {"full_load_kg": 10000})}
                    for dev, (phone, plate, _) in TRUCKS.items()],
    })


def point(i: int, t0: datetime, *, load: float = 1.0, lid: bool = True) -> Any:
    return location(PROFILE, ts=t0 + timedelta(seconds=30 * i), lat=24.30 + i / 1000, lon=109.40,
                    speed_kmh=35, heading=10, signals=Signals(lid, False, load, 0))


@pytest.mark.usefixtures("live_services")  # the real Mosquitto, started by deploy/local
def test_jt808_terminals_through_the_edge_to_mosquitto(tmp_path: Path) -> None:
    site = f"it-808-{uuid.uuid4().hex[:6]}"
    gateway, dead = free_port(), free_port()
    received: list[tuple[str, Envelope]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-sub-{site}", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, msg: received.append((msg.topic, decode(bytes(msg.payload))))
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    sub.subscribe(f"ws/v1/{site}/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    terms = {dev: TerminalSim(phone, plate, "127.0.0.1", gateway, is_2019=v19)
             for dev, (phone, plate, v19) in TRUCKS.items()}

    async def phase(mqtt_port: int, body: Any) -> None:
        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(site_config(site, tmp_path, gateway, mqtt_port), stop=stop,
                                              flush_timeout=5))
        await wait_listening("127.0.0.1", gateway)
        try:
            await body()
        finally:
            stop.set()
            await asyncio.wait_for(agent, 20)

    async def offline_uplink() -> None:
        for dev, term in terms.items():
            assert await term.connect(), dev
            for i in range(5):
                assert await term.report(point(i, t0)), (dev, i)  # acked: in the outbox
        for term in terms.values():
            await term.close()

    async def back_online() -> None:
        term13, term19 = terms["t13"], terms["t19"]
        for i in range(5, 8):  # sent while the gateway was down (between the phases): t13 kept them
            assert not await term13.report(point(i, t0, load=0.0))
        assert await term13.connect()  # reconnect with the kept auth code
        assert await term13.backfill() == 3
        assert await term19.connect()
        assert await term19.report(point(5, t0, lid=False))
        stranger = TerminalSim("13900000000", "桂B00000", "127.0.0.1", gateway)
        assert not await stranger.connect()
        await stranger.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_points(received)) < 14:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # a status heartbeat with both terminals online
        for term in terms.values():
            await term.close()

    try:
        asyncio.run(phase(dead, offline_uplink))
        assert _points(received) == {}  # the uplink was down: nothing reached the broker
        asyncio.run(phase(SETTINGS.mqtt_port, back_online))
    finally:
        sub.loop_stop()
        sub.disconnect()

    points = _points(received)
    by_device: dict[str, list[TruckTelemetry]] = {}
    for topic, e in points.values():
        assert topic == f"ws/v1/{site}/jt808/{e.device_id}/truck_telemetry"
        by_device.setdefault(e.device_id, []).append(e)
    assert sorted(p.ts for p in by_device["t13"]) == [t0 + timedelta(seconds=30 * i) for i in range(8)]
    assert sorted(p.ts for p in by_device["t19"]) == [t0 + timedelta(seconds=30 * i) for i in range(6)]
    assert {p.plate for p in by_device["t13"]} == {"桂B12345"}
    assert {p.plate for p in by_device["t19"]} == {"桂B54321"}
    assert {p.load_kg for p in by_device["t13"]} == {19000.0, 0.0}  # full = 31000 - 12000; then empty
    assert {p.load_kg for p in by_device["t19"]} == {10000.0}
    assert [p.lid_closed for p in sorted(by_device["t19"], key=lambda p: p.ts)][-1] is False
    statuses = [e for _, e in received if isinstance(e, DeviceStatus)]
    for dev in TRUCKS:
        assert any(s.device_id == dev and s.state.value == "online" for s in statuses), dev


def _points(received: list[tuple[str, Envelope]]) -> dict[str, tuple[str, TruckTelemetry]]:
    return {e.msg_id: (t, e) for t, e in received if isinstance(e, TruckTelemetry)}

"""Sim on a real pty -> edge agent (pyserial, subprocess) -> Mosquitto -> a paho subscriber."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from contract import DeviceStatus, Weighing, decode
from firmware_sim.weighbridge import TruckVisit, run_weighbridge
from wastestream.foundation.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings()


@pytest.mark.usefixtures("live_services")  # the real Mosquitto, started by deploy/local
@pytest.mark.parametrize("fmt", ["toledo", "xk3190"])
def test_sim_to_mqtt_tickets(tmp_path: Path, fmt: str) -> None:
    site = f"it-{uuid.uuid4().hex[:8]}"
    dev, anpr = tmp_path / "dev" / "wb-1", tmp_path / "dev" / "wb-1-anpr"
    config = {
        "site_id": site,
        "mqtt": {"host": SETTINGS.mqtt_host, "port": SETTINGS.mqtt_port, "session_expiry_s": 60,
                 "delivery": "broker"},  # the edge alone: the broker's PUBACK is the delivery
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "vehicles": [
            {
                "plate": "桂B12345",
                "tare_kg": 12000,
                "rated_gross_kg": 31000,
                "category": "residual",
                "origin": "chengzhong",
            },
            {
                "plate": "桂B23456",
                "tare_kg": 9800,
                "rated_gross_kg": 25000,
                "category": "kitchen",
                "origin": "yufeng",
            },
        ],
        "devices": [
            {
                "id": "wb-1",
                "kind": "weighbridge",
                "port": str(dev),
                "anpr_port": str(anpr),
                "format": fmt,
                "checksum": True,
                "division_kg": 20,
                "occupied_kg": 500,
                "stable": {"tolerance_kg": 20, "hold_s": 1.0},
            },
        ],
    }
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    received: list[Weighing] = []
    statuses: list[DeviceStatus] = []
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        event = decode(msg.payload)
        if isinstance(event, Weighing):
            received.append(event)
        elif isinstance(event, DeviceStatus):
            statuses.append(event)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-sub-{site}", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    sub.subscribe(f"ws/v1/{site}/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge.agent", "--config", str(cfg_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    visits = [
        TruckVisit(
            "桂B12345", 28010, tare_kg=12000, rated_gross_kg=31000, incidents=("torn_frame", "bad_checksum")
        ),
        TruckVisit("桂B23456", 21000, tare_kg=9800, rated_gross_kg=25000),
        TruckVisit("桂B12345", 31500, tare_kg=12000, rated_gross_kg=31000),
    ]
    try:
        ledger = asyncio.run(
            run_weighbridge(dev, anpr, fmt, visits, lead_s=2.5, stable_s=2.5, ramp_s=1.0, gap_s=1.0)
        )
        deadline = time.monotonic() + 15
        while len(received) < len(ledger) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # nothing extra arrives
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            out, _ = agent.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            out, _ = agent.communicate()
        time.sleep(0.3)
        sub.loop_stop()
        sub.disconnect()

    assert agent.returncode == 0, out
    assert len(received) == 3, out
    for ticket, entry in zip(received, ledger, strict=True):
        assert ticket.plate == entry.visit.plate and ticket.site_id == site and ticket.device_id == "wb-1"
        assert (ticket.gross_kg, ticket.tare_kg, ticket.net_kg) == (
            entry.gross_kg,
            entry.tare_kg,
            entry.net_kg,
        )
        assert ticket.stable == entry.stable
        assert tuple(f.value for f in ticket.flags) == entry.flags
    assert received[1].category.value == "kitchen" and received[1].origin == "yufeng"
    assert len({t.msg_id for t in received}) == 3
    assert "checksum mismatch" in out and "torn" in out
    edge_states = [s.state.value for s in statuses if s.device_id == f"{site}-edge"]
    assert edge_states[0] == "online" and edge_states[-1] == "stopped"  # SIGTERM: a planned stop
    last = {s.device_id: s for s in statuses}
    for device in (f"{site}-edge", "wb-1"):  # the agent and each device say so, with the reason
        assert last[device].state.value == "stopped", last[device]
        assert last[device].last_error == "planned stop (SIGTERM)", last[device]
    assert any(s.device_id == "wb-1" and s.state.value == "online" for s in statuses)

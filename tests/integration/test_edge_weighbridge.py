"""Sim on a real pty -> edge agent (pyserial, subprocess) -> Mosquitto -> a paho subscriber."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from contract import DeviceStatus, Weighing, decode
from firmware_sim.weighbridge import LedgerEntry, TruckVisit, run_weighbridge
from wastestream.foundation.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings()


VEHICLES = [
    {"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000, "category": "residual",
     "origin": "chengzhong"},
    {"plate": "桂B23456", "tare_kg": 9800, "rated_gross_kg": 25000, "category": "kitchen",
     "origin": "yufeng"},
    {"plate": "桂B30000", "rated_gross_kg": 40000, "category": "construction", "origin": "liubei"},  # no tare
]


@dataclass
class Run:
    received: list[Weighing]
    statuses: list[DeviceStatus]
    ledger: list[LedgerEntry]
    out: str
    returncode: int | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def run_site(tmp_path: Path, device: dict[str, Any], visits: list[TruckVisit], expect: int,
             http_port: int | None = None, **sim: Any) -> Run:
    """One edge agent (a subprocess) on the sim's pty, its messages read back from Mosquitto."""
    site = f"it-{uuid.uuid4().hex[:8]}"
    dev, anpr = tmp_path / "dev" / "wb-1", tmp_path / "dev" / "wb-1-anpr"
    config = {
        "site_id": site,
        "mqtt": {"host": SETTINGS.mqtt_host, "port": SETTINGS.mqtt_port, "session_expiry_s": 60,
                 "delivery": "broker"},  # the edge alone: the broker's PUBACK is the delivery
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "vehicles": VEHICLES,
        "devices": [{"id": "wb-1", "kind": "weighbridge", "port": str(dev), "division_kg": 20,
                     "occupied_kg": 500, "stable": {"tolerance_kg": 20, "hold_s": 1.0}, **device}],
    }
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    received: list[Weighing] = []
    statuses: list[DeviceStatus] = []
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        event = decode(bytes(msg.payload))
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
    agent = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(cfg_path)], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if http_port is not None:
            wait_listening(http_port)
        ledger = asyncio.run(run_weighbridge(dev, None if http_port else anpr, device.get("format", "toledo"),
                                             visits, lead_s=2.5, stable_s=2.5, ramp_s=1.0, gap_s=1.0, **sim))
        deadline = time.monotonic() + 15
        while len(received) < expect and time.monotonic() < deadline:
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
    return Run(received, statuses, ledger, out, agent.returncode)


@pytest.mark.usefixtures("live_services")  # the real Mosquitto, started by deploy/local
@pytest.mark.parametrize("fmt", ["toledo", "xk3190"])
def test_sim_to_mqtt_tickets(tmp_path: Path, fmt: str) -> None:
    visits = [
        TruckVisit(
            "桂B12345", 28010, tare_kg=12000, rated_gross_kg=31000, incidents=("torn_frame", "bad_checksum")
        ),
        TruckVisit("桂B23456", 21000, tare_kg=9800, rated_gross_kg=25000),
        TruckVisit("桂B12345", 31500, tare_kg=12000, rated_gross_kg=31000),
    ]
    device = {"anpr_port": str(tmp_path / "dev" / "wb-1-anpr"), "format": fmt, "checksum": True}
    run = run_site(tmp_path, device, visits, expect=3)
    received, statuses, ledger, out = run.received, run.statuses, run.ledger, run.out
    site = received[0].site_id if received else "?"
    assert run.returncode == 0, out
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
    for dev_id in (f"{site}-edge", "wb-1"):  # the agent and each device say so, with the reason
        assert last[dev_id].state.value == "stopped", last[dev_id]
        assert last[dev_id].last_error == "planned stop (SIGTERM)", last[dev_id]
    assert any(s.device_id == "wb-1" and s.state.value == "online" for s in statuses)


@pytest.mark.usefixtures("live_services")
def test_http_camera_two_pass_and_remote_jump_reach_mqtt(tmp_path: Path) -> None:
    """The sim's camera pushes AlarmInfoPlate to the edge's HTTP server; the indicator speaks the
    ST,GS line; a remote-control jump is flagged; a truck without a registered tare is weighed in
    and out and makes one ticket with its measured tare."""
    port = free_port()
    visits = [
        TruckVisit("桂B12345", 26000, tare_kg=12000, rated_gross_kg=31000, incidents=("remote_jump",)),
        TruckVisit("桂B30000", 26000),  # first pass: no ticket
        TruckVisit("桂B30000", 9000),  # second pass: the ticket
    ]
    device = {"format": "st_gs", "anpr_http": {"host": "127.0.0.1", "port": port, "path": "/plate"}}
    run = run_site(tmp_path, device, visits, expect=2, http_port=port,
                   camera_url=f"http://127.0.0.1:{port}/plate")
    assert run.returncode == 0, run.out
    jumped, two_pass = run.received  # exactly two tickets
    assert (jumped.plate, jumped.gross_kg, jumped.net_kg) == ("桂B12345", 28000, 16000)
    assert [f.value for f in jumped.flags] == ["remote_jump"]
    assert (two_pass.plate, two_pass.gross_kg, two_pass.tare_kg, two_pass.net_kg) == ("桂B30000", 26000, 9000,
                                                                                      17000)
    assert (two_pass.tare_source.value, two_pass.direction.value, two_pass.flags) == ("measured", "in", ())
    assert two_pass.category.value == "construction"
    assert "weighed in at 26000 kg (first pass)" in run.out
    assert "plate 桂B30000 (http, confidence 95)" in run.out

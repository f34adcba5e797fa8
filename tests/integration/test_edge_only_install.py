"""An edge box's install: a fresh venv holding only `wastestream[edge]` runs the agent for real.

The checkout (tracked and new files, not tests) is copied and `pip install '<copy>[edge]'` goes into a
new venv (from PyPI, or pip's cache); none of the server libraries may be in it. Its own console
script `wastestream edge run` then reads a weighbridge simulated on a pty by this venv (the
simulator is not what an edge box runs) and publishes to the real Mosquitto, where a subscriber
must get the weighing. Its log is JSON lines (WS_LOG_FORMAT=json) with the site on every line and
the device on the driver's. A stream-only command in that venv names the extra it lacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
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

from contract import Weighing, decode
from firmware_sim.weighbridge import TruckVisit, run_weighbridge
from wastestream.foundation.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings()
SERVER_DISTS = ("faust-streaming", "aiokafka", "shapely", "influxdb-client", "grafana-client",
                "grafana-foundation-sdk", "openpyxl", "uvloop", "orjson")


def _copy_checkout(dest: Path) -> None:
    """What a wheel is built from: the tracked and new files of the tree, without tests."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        src = REPO / name
        if name.startswith("tests/") or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge-install")
    src, venv = root / "src", root / "venv"
    _copy_checkout(src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.monotonic()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run([*pip, f"{src}[edge]"], env=env, capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"pip install '[edge]' into a fresh venv: {time.monotonic() - started:.0f} s")
    return venv


def _installed(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
                          "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    return {d["name"].lower() for d in json.loads(out)}


def _edge_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "WS_LOG_FORMAT": "json"}


def test_the_edge_venv_holds_no_server_library(edge_venv: Path) -> None:
    installed = _installed(edge_venv)
    assert "wastestream" in installed and "pymodbus" in installed and "pyserial" in installed
    assert not installed & set(SERVER_DISTS), installed & set(SERVER_DISTS)


def test_stream_commands_name_their_extra(edge_venv: Path, tmp_path: Path) -> None:
    for argv in (["worker"], ["bridge"], ["dashboards", "generate"], ["alerts", "serve"]):
        r = subprocess.run([str(edge_venv / "bin" / "wastestream"), *argv], cwd=tmp_path, env=_edge_env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (argv, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert "pip install 'wastestream[" in r.stderr, r.stderr


@pytest.mark.usefixtures("live_services")  # the real Mosquitto
def test_the_edge_agent_runs_from_the_edge_only_venv(edge_venv: Path, tmp_path: Path) -> None:
    site = f"it-edgeonly-{uuid.uuid4().hex[:8]}"
    dev, anpr = tmp_path / "dev" / "wb-1", tmp_path / "dev" / "wb-1-anpr"
    config = {
        "site_id": site,
        "mqtt": {"host": SETTINGS.mqtt_host, "port": SETTINGS.mqtt_port, "session_expiry_s": 60,
                 "delivery": "broker"},  # no bridge here: the broker's PUBACK is the delivery
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "vehicles": [{"plate": "桂B12345", "tare_kg": 12000, "rated_gross_kg": 31000,
                      "category": "residual", "origin": "chengzhong"}],
        "devices": [{"id": "wb-1", "kind": "weighbridge", "port": str(dev), "anpr_port": str(anpr),
                     "format": "toledo", "checksum": True, "division_kg": 20, "occupied_kg": 500,
                     "stable": {"tolerance_kg": 20, "hold_s": 1.0}}],
    }
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    received: list[Weighing] = []
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        event = decode(msg.payload)
        if isinstance(event, Weighing):
            received.append(event)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-sub-{site}", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    sub.subscribe(f"ws/v1/{site}/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)
    command = [str(edge_venv / "bin" / "wastestream"), "edge", "run", "--config", str(cfg_path)]
    agent = subprocess.Popen(command, cwd=tmp_path, env=_edge_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        visit = TruckVisit("桂B12345", 28000, tare_kg=12000, rated_gross_kg=31000)
        ledger = asyncio.run(run_weighbridge(dev, anpr, "toledo", [visit], lead_s=2.5, stable_s=2.5,
                                             ramp_s=1.0, gap_s=1.0))
        deadline = time.monotonic() + 15
        while len(received) < len(ledger) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
        sub.loop_stop()
        sub.disconnect()
    assert agent.returncode == 0, err
    assert [w.plate for w in received] == ["桂B12345"], err
    assert received[0].net_kg == 28000 - 12000

    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "the agent logged nothing"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for rec in records:
        assert {"ts", "level", "logger", "msg"} <= rec.keys(), rec
        assert rec["site"] == site, rec
    assert any(rec.get("device") == "wb-1" for rec in records), records

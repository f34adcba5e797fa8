"""WS_LOG_FORMAT=json: every line a process logs is one JSON object, with site/device/msg_id fields.

Runs the bridge, a Faust worker, the alert service and a one-shot command (`wastestream topics`)
against the real services with WS_LOG_FORMAT=json and parses each line of their logs (stderr;
a worker's stdout is Faust's start-up banner, not a log). The bridge is sent a message that is not
JSON on a device topic: its rejection line names that site and device as fields. The edge agent's
JSON log is checked by test_edge_only_install.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from contract.topics import KAFKA_TOPICS
from wastestream.foundation.settings import Settings
from wastestream.pipeline import commit_group_at_end

pytestmark = pytest.mark.integration

WASTESTREAM = str(Path(sys.executable).parent / "wastestream")
KEYS = {"ts", "level", "logger", "msg"}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WS_LOG_FORMAT": "json", **extra}


def _records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.strip():
            rec = json.loads(line)  # fails the test on any line that is not one JSON object
            assert rec.keys() >= KEYS, rec
            records.append(rec)
    return records


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.3)
    pytest.fail(f"no {text!r} in {path}:\n{path.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_the_bridge_logs_json_with_the_site_and_device(live_services: Settings, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:8]
    site, device = f"it-log-{unique}", "wb-json"
    log = tmp_path / "bridge.log"
    with log.open("wb") as fh:
        bridge = subprocess.Popen([WASTESTREAM, "bridge", "--client-id", f"it-log-{unique}", "--group",
                                   f"itlog{unique}", "--log-level", "info"], env=_env(), stderr=fh, stdout=fh)
    try:
        _wait_for(log, "MQTT connected", bridge, 60)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-logpub-{unique}", protocol=mqtt.MQTTv5)
        pub.connect(live_services.mqtt_host, live_services.mqtt_port)
        pub.loop_start()
        pub.publish(f"ws/v1/{site}/weighbridge/{device}/weighing", b"{not json", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        _wait_for(log, "rejected message", bridge, 30)
    finally:
        assert _stop(bridge) == 0
    records = _records(log.read_text(encoding="utf-8"))
    rejected = [r for r in records if r["msg"].startswith("rejected message") and site in r["msg"]]
    assert rejected and rejected[0]["site"] == site and rejected[0]["device"] == device, rejected


def test_a_worker_logs_json(live_services: Settings, tmp_path: Path) -> None:
    app_id = f"it-logworker-{uuid.uuid4().hex[:8]}"
    sources = [topic for event, topic in KAFKA_TOPICS.items() if event != "alert"]
    asyncio.run(commit_group_at_end(live_services.kafka_bootstrap, app_id, sources))
    log, banner = tmp_path / "worker.log", tmp_path / "worker.out"
    with log.open("wb") as err, banner.open("wb") as out:
        worker = subprocess.Popen([WASTESTREAM, "worker", "--log-level", "info"], stdout=out, stderr=err,
                                  env=_env(WS_FAUST_APP_ID=app_id, WS_RUN_DIR=str(tmp_path)), cwd=tmp_path)
    try:
        _wait_for(log, "Ready", worker, 180)
    finally:
        assert _stop(worker) == 0
    records = _records(log.read_text(encoding="utf-8"))
    assert any(r["logger"].startswith("faust") for r in records)
    assert any(r["logger"].startswith("stream") for r in records), "no line of our own agents"
    assert any("Ready" in r["msg"] for r in records)


def test_the_alert_service_and_a_command_log_json(live_services: Settings, tmp_path: Path) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(yaml.safe_dump({"kafka_group": f"it-log-alerts-{uuid.uuid4().hex[:8]}",
                                      "api": {"port": 0, "token": {"value": "t"}}}), encoding="utf-8")
    log = tmp_path / "alerts.log"
    with log.open("wb") as fh:
        service = subprocess.Popen([WASTESTREAM, "alerts", "serve", "--config", str(config), "--db",
                                    str(tmp_path / "alerts.db"), "--port", "0", "--log-level", "info"],
                                   env=_env(WS_RUN_DIR=str(tmp_path)), stdout=fh, stderr=fh)
    try:
        _wait_for(log, "API on", service, 60)
    finally:
        assert _stop(service) == 0
    assert _records(log.read_text(encoding="utf-8"))

    topics = subprocess.run([WASTESTREAM, "topics", "--log-level", "info"], env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert topics.returncode == 0, topics.stderr
    _records(topics.stderr)
    assert "all present" in topics.stdout  # the command's answer stays on stdout, as text

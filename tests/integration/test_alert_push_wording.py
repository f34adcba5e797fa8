"""The MQTT push a terminal receives from the real Mosquitto: its display text is Chinese first,
in Beijing time, and the document carries `ts_local` next to the UTC `raised_at` (issue 13, item 4)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stream.alerting.channels.mqtt import MqttChannel
from tests.unit.test_alert_wording import MISSING
from wastestream.foundation.settings import Settings


def receive_one(settings: Settings, topic: str, alert: dict[str, Any]) -> dict[str, Any]:
    """Subscribe, push `alert` through the channel, and return the document the broker delivered."""
    got: list[dict[str, Any]] = []
    subscribed, arrived = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.on_message = lambda c, u, m: (got.append(json.loads(m.payload)), arrived.set())
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK from Mosquitto"
        channel = MqttChannel("terminals", settings.mqtt_host, settings.mqtt_port, topic, "https://zf/alerts")

        async def push() -> None:
            try:
                assert (await channel.send(alert, ["m1"])).ok
            finally:
                await channel.close()

        asyncio.run(push())
        assert arrived.wait(10), "the push did not arrive"
        return got[0]
    finally:
        client.disconnect()
        client.loop_stop()


def test_mqtt_terminal_text_is_chinese_in_beijing_time(live_services: Settings, unique: str) -> None:
    doc = receive_one(live_services, f"wstest/{unique}/enforcement/alerts/critical", MISSING)
    lines = doc["text"].splitlines()
    assert lines[0] == "【严重】电子联单未到达：桂B54321"
    assert "时间：2026-12-03 15:14:21（北京时间）" in lines and "07:14" not in doc["text"]
    assert next(i for i, line in enumerate(lines) if line.startswith("概要：")) + 1 == next(
        i for i, line in enumerate(lines) if line.startswith("English：Manifest missing (critical): "))
    assert doc["raised_at"] == "2026-12-03T07:14:21.000Z"
    assert doc["ts_local"] == "2026-12-03T15:14:21.000+08:00"
    assert doc["kind_name"] == "电子联单未到达" and doc["severity_name"] == "严重"

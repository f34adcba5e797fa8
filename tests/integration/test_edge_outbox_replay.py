"""Outbox replay through the MQTT session: stored while offline, delivered in order, deleted on PUBACK."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttConfig
from edge.mqtt_session import MqttSession
from edge.outbox import Outbox
from wastestream.foundation.settings import load_settings

pytestmark = pytest.mark.integration
SETTINGS = load_settings()


@pytest.mark.usefixtures("live_services")  # the real Mosquitto, started by deploy/local
def test_replay_in_order_after_outage(tmp_path: Path) -> None:
    site = f"it-{uuid.uuid4().hex[:8]}"
    topic = f"ws/v1/{site}/weighbridge/wb-1/weighing"
    outbox = Outbox(tmp_path / "o.db")
    for _ in range(250):  # written while the agent had no broker
        outbox.put("wb-1", topic, lambda msg_id, seq: msg_id.encode())
    expected = [e.msg_id for e in outbox.pending(limit=1000)]
    outbox.close()

    got: list[str] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"it-sub-{site}", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m.payload.decode()) if m.topic == topic else None
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    sub.subscribe(f"ws/v1/{site}/#", qos=1)
    sub.loop_start()
    assert ready.wait(5)

    outbox = Outbox(tmp_path / "o.db")  # the agent restarts
    session = MqttSession(
        # No contract payloads and no bridge here: the broker's PUBACK is the delivery.
        MqttConfig(host=SETTINGS.mqtt_host, port=SETTINGS.mqtt_port, max_inflight=10, delivery="broker"),
        site,
        outbox,
        status_kind="weighbridge",
    )
    session.start()
    try:
        assert session.wait_connected(10)
        deadline = time.monotonic() + 20
        while (len(got) < len(expected) or outbox.depth()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == expected
        assert outbox.depth() == 0
        outbox.put("wb-1", topic, lambda msg_id, seq: msg_id.encode())  # live message after replay
        deadline = time.monotonic() + 5
        while len(got) < len(expected) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got[-1].endswith(":251")
    finally:
        session.stop(flush_timeout=2)
        sub.loop_stop()
        sub.disconnect()
    assert outbox.depth() == 0

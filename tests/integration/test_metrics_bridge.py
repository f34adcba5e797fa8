"""The bridge's /metrics, /healthz and /readyz, as a process on the real Kafka (issue 13).

The bridge reads from a private Mosquitto (a real broker on the test's own port): it then sees
exactly the test's messages, so its counters must move by exactly what was published, and
stopping that broker must make it not ready with the reason, while it stays alive."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import encode, mqtt_topic
from contract.topics import KAFKA_TOPICS, MQTT_SUBSCRIBE_ALL
from tests.integration.metricskit import (
    PrivateBroker,
    answered,
    free_port,
    get,
    ready,
    scrape,
    stop_process,
    value,
    wait_for,
    weighing,
)
from wastestream.foundation.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

VALID, INVALID = 7, 3


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
        info.wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()


def start_bridge(tmp_path: Path, unique: str, mqtt_port: int, metrics_port: int,
                 **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"bridge-{unique}.log"
    environ = dict(os.environ, WS_MQTT_PORT=str(mqtt_port), **env)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stream.bridge", "--client-id", f"obs-{unique}",
                                 "--group", f"obs{unique}", "--metrics-port", str(metrics_port)],
                                stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=REPO_ROOT)
    return proc, log


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    b = PrivateBroker(free_port(), tmp_path)
    yield b
    b.stop()


def test_bridge_counts_what_it_takes_and_is_not_ready_without_mqtt(
        live_services: Settings, broker: PrivateBroker, tmp_path: Path, unique: str) -> None:
    metrics_port = free_port()
    proc, log = start_bridge(tmp_path, unique, broker.port, metrics_port)
    try:
        wait_for(lambda: ready(metrics_port), "the bridge ready", 60, proc=proc, log=log)
        before = scrape(metrics_port)
        site, device = f"obs-{unique}", f"wb-{unique}"
        topic = mqtt_topic(site, "weighbridge", device, "weighing")
        good = [(topic, encode(weighing(site, device, i))) for i in range(1, VALID + 1)]
        bad = [(topic, b'{"not": "a weighing"}'), (topic, b"\xff\xfe garbage"), (topic, b"")]
        assert len(bad) == INVALID
        publish(broker.port, good + bad)

        def moved() -> bool:
            now = scrape(metrics_port)
            done = (value(now, "ws_messages_out_total", topic=KAFKA_TOPICS["weighing"])
                    + value(now, "ws_messages_deadlettered_total", topic=MQTT_SUBSCRIBE_ALL)
                    - value(before, "ws_messages_out_total", topic=KAFKA_TOPICS["weighing"])
                    - value(before, "ws_messages_deadlettered_total", topic=MQTT_SUBSCRIBE_ALL))
            return done >= VALID + INVALID

        wait_for(moved, "every message in Kafka", 60, proc=proc, log=log)
        after = scrape(metrics_port)

        def delta(name: str, topic: str) -> float:
            return value(after, name, topic=topic) - value(before, name, topic=topic)

        assert delta("ws_messages_in_total", MQTT_SUBSCRIBE_ALL) == VALID + INVALID
        assert delta("ws_messages_out_total", KAFKA_TOPICS["weighing"]) == VALID
        assert delta("ws_messages_deadlettered_total", MQTT_SUBSCRIBE_ALL) == INVALID
        for other in ("deposit", "truck_telemetry", "device_status"):
            assert delta("ws_messages_out_total", KAFKA_TOPICS[other]) == 0
        assert value(after, "ws_ready", component="bridge") == 1
        assert value(after, "process_resident_memory_bytes") > 0  # process basics

        broker.stop()
        _, body = wait_for(answered(metrics_port, "/readyz", 503), "/readyz to say not ready", 30,
                           proc=proc, log=log)
        assert f"mqtt: not connected to 127.0.0.1:{broker.port}" in body, body
        assert "kafka" not in body, body  # Kafka is still fine: the reason names only what is wrong
        assert get(metrics_port, "/healthz") == (200, "alive\n")  # not ready, but alive
        assert value(scrape(metrics_port), "ws_ready", component="bridge") == 0
    finally:
        stop_process(proc)


def test_bridge_without_kafka_is_not_ready_with_the_reason(
        live_services: Settings, broker: PrivateBroker, tmp_path: Path, unique: str) -> None:
    metrics_port = free_port()
    nothing = free_port()  # no Kafka there
    proc, log = start_bridge(tmp_path, unique, broker.port, metrics_port,
                             WS_KAFKA_BOOTSTRAP=f"127.0.0.1:{nothing}")
    try:
        status, body = wait_for(answered(metrics_port, "/readyz"), "an answer from /readyz", 30,
                                proc=proc, log=log)
        assert status == 503
        assert "kafka: Kafka producer not started" in body, body
        assert get(metrics_port, "/healthz")[0] == 200
        assert get(metrics_port, "/nothing-here")[0] == 404
    finally:
        stop_process(proc)

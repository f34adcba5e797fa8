"""Issue 11, finding 1, on the real Mosquitto and Kafka: a retained poison message kills no bridge.

A `device_status` with a field of 1,000 nested arrays (2 KB) made msgspec raise RecursionError out
of the bridge's per-message path: the process exited, restarted, got the redelivery and exited
again; published retained, it also killed every bridge started later under a new client id (the
broker hands retained messages to new shared subscriptions too). Now each bridge dead-letters it
with its reason and goes on delivering.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import DeviceStatus, decode, encode, mqtt_topic
from contract.events import DeviceState
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS
from stream.bridge import Bridge
from stream.topics_admin import ensure_topics
from tests.integration.test_bridge import (
    SETTINGS,
    _end_bridge_sessions,  # noqa: F401  (autouse: ends the test bridges' persistent sessions)
    config,
    end_offsets,
    messages_in,
    publish,
    read_since,
    weighing,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SITE = "site-poison"


def poison_status(device: str) -> bytes:
    """The issue's message: a device_status of this site with `"x": [[[...]]]`, 1,000 deep."""
    valid = encode(DeviceStatus(msg_id=f"{device}:1:1", device_id=device, site_id=SITE,
                                ts=datetime.now(UTC), state=DeviceState.ONLINE))
    return b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"," + valid[1:]


def publish_retained(topic: str, payload: bytes) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def poison_topic() -> Iterator[str]:
    """A device topic of this run; its retained message is cleared afterwards (empty payload)."""
    topic = mqtt_topic(SITE, "weighbridge", f"wb-{uuid.uuid4().hex[:8]}", "device_status")
    yield topic
    publish_retained(topic, b"")


def test_retained_poison_is_dead_lettered_by_every_bridge_and_delivery_goes_on(poison_topic: str) -> None:
    """Other tests may share the broker: counts are of this run's device, and at least."""
    run = uuid.uuid4().hex[:8]
    device = poison_topic.split("/")[4]
    poison = poison_status(device)
    good_topic = mqtt_topic(SITE, "weighbridge", device, "weighing")
    good = [encode(weighing(device, i, SITE)) for i in range(10)]

    async def scenario() -> None:
        await ensure_topics(SETTINGS.kafka_bootstrap, SETTINGS.kafka_partitions)
        topics = [KAFKA_TOPICS["weighing"], KAFKA_TOPICS["device_status"], DEADLETTER_TOPIC]
        offsets = await end_offsets(topics)
        await asyncio.to_thread(publish_retained, poison_topic, poison)
        # the later one has a new client id and its own share group: it gets the retained message too
        bridges = [Bridge(config(f"{run}a")), Bridge(config(f"{run}b"))]
        tasks: list[asyncio.Task[None]] = []
        try:
            for bridge in bridges:
                tasks.append(asyncio.create_task(bridge.run()))
                await bridge.wait_connected(15)
            dead = await read_since(offsets, 2, device.encode(), timeout=20)
            assert not [t for t in tasks if t.done()], "a bridge stopped on the poison message"
            await asyncio.to_thread(publish, [(good_topic, p) for p in good])
            found = await read_since(offsets, 2 + 2 * len(good), device.encode(), timeout=30)
            assert not [t for t in tasks if t.done()], "a bridge stopped on the poison message"
        finally:
            for bridge in bridges:
                bridge.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)  # re-raises what stopped a bridge
        records = [json.loads(v) for t, _, v in dead if t == DEADLETTER_TOPIC]
        assert len(records) >= 2 and {r["topic"] for r in records} == {poison_topic}
        assert all("RecursionError" in r["reason"] or "nested" in r["reason"] for r in records)
        assert all(r["payload_bytes"] == len(poison) for r in records)
        routed = messages_in(found, KAFKA_TOPICS["weighing"])
        assert all(routed.count(decode(p)) >= 2 for p in good)  # each bridge's share group delivered each
        assert not [v for t, _, v in found if t == KAFKA_TOPICS["device_status"]]
        assert all(b.stats.rejected >= 1 and b.stats.routed >= len(good) for b in bridges)

    asyncio.run(scenario())

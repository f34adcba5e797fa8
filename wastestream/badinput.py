"""Show the bad-input path: publish malformed device messages, read their dead-letter records back.

Used by the demo (and handy on a live system): bad input must end as a record with a reason
in ws.deadletter while the pipeline keeps running.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from contract.topics import DEADLETTER_TOPIC, mqtt_topic
from wastestream.foundation.mqtt import MqttAuth, make_client
from wastestream.foundation.settings import Settings

BAD_MESSAGES: list[tuple[str, bytes]] = [
    # a truncated JSON document, as a flaky modem might deliver it
    (mqtt_topic("demo-site", "weighbridge", "wb-demo", "weighing"), b'{"type": "weighing", "msg_id": "wb-de'),
    # a device publishing under another device's topic (spoofing)
    (mqtt_topic("demo-site", "weighbridge", "wb-demo", "device_status"),
     json.dumps({"type": "device_status", "msg_id": "wb-other:1:1", "device_id": "wb-other",
                 "site_id": "demo-site", "ts": "2026-01-01T00:00:00Z", "state": "online"}).encode()),
]


def publish_bad_messages(settings: Settings) -> int:
    """Publish BAD_MESSAGES at QoS 1 and wait for the broker's acks; returns how many."""
    client = make_client(f"ws-badinput-{time.time_ns()}", MqttAuth.from_settings(settings))
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in BAD_MESSAGES]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(BAD_MESSAGES)


async def read_deadletters(settings: Settings, since_ms: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Dead-letter records written since `since_ms` (Kafka timestamps), from every partition."""
    # No group: the consumer is assigned every partition of the topic and commits nothing.
    consumer = AIOKafkaConsumer(DEADLETTER_TOPIC, bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        if not partitions:
            return []
        offsets = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            found = offsets.get(tp)
            consumer.seek(tp, found.offset if found else ends[tp])
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(json.loads(m.value) for m in messages)
        return records
    finally:
        await consumer.stop()


def deadletters_since(settings: Settings, since_ms: int) -> list[dict[str, Any]]:
    return asyncio.run(read_deadletters(settings, since_ms))

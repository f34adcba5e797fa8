"""Bridge against the real Mosquitto and Kafka: valid messages routed, invalid ones dead-lettered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from paho.mqtt.enums import CallbackAPIVersion

from contract import Weighing, decode, encode, mqtt_topic
from contract.events import Direction, Envelope, WasteCategory
from contract.kafka_record import read_messages
from contract.topics import DEADLETTER_TOPIC
from stream.bridge import Bridge, BridgeConfig
from stream.topics_admin import ensure_topics
from wastestream.foundation.settings import load_settings
from wastestream.pipeline import drop_mqtt_sessions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SETTINGS = load_settings()


def weighing(device: str, seq: int, site: str = "site-a") -> Weighing:
    return Weighing(
        msg_id=f"{device}:1:{seq}", device_id=device, site_id=site, ts=datetime.now(UTC),
        ticket_id=f"T{seq}", plate="沪A12345", direction=Direction.INBOUND, gross_kg=30000.0,
        tare_kg=12000.0, net_kg=18000.0, category=WasteCategory.KITCHEN, origin="district-3",
    )


def publish(messages: Iterable[tuple[str, bytes]]) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(SETTINGS.mqtt_host, SETTINGS.mqtt_port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()


async def end_offsets(topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=SETTINGS.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def read_since(offsets: dict[TopicPartition, int], want: int, marker: bytes, timeout: float = 20.0
                     ) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) of records containing `marker` after `offsets` (see `read_with_partitions`)."""
    return [(t, k, v) for t, k, v, _ in await read_with_partitions(offsets, want, marker, timeout)]


def messages_in(found: list[tuple[str, bytes | None, bytes]], topic: str) -> list[Envelope]:
    """The contract messages of the records of `topic` in `found` (any record version), in order."""
    return [m for t, _, v in found if t == topic for m in read_messages(v)]


async def read_with_partitions(offsets: dict[TopicPartition, int], want: int, marker: bytes,
                               timeout: float = 20.0) -> list[tuple[str, bytes | None, bytes, int]]:
    """(topic, key, value, partition) of records containing `marker` after `offsets`, until `want`
    messages (a batch record holds several: contract/kafka_record.py) or the timeout (+1s for extras)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=SETTINGS.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[str, bytes | None, bytes, int]] = []
    try:
        consumer.assign(list(offsets))
        for tp, off in offsets.items():
            consumer.seek(tp, off)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                found += [(tp.topic, r.key, r.value, tp.partition) for r in records
                          if marker in (r.value or b"")]
            if sum(_count(t, v) for t, _, v, _ in found) >= want:
                deadline = min(deadline, loop.time() + 1.0)
        return found
    finally:
        await consumer.stop()


def _count(topic: str, value: bytes) -> int:
    return 1 if topic == DEADLETTER_TOPIC else len(read_messages(value))


_CLIENT_IDS: list[str] = []


@pytest.fixture(autouse=True)
def _end_bridge_sessions() -> Iterator[None]:
    """A test bridge's persistent session in its own share group would otherwise collect every
    later message of the shared broker for a week (SESSION_EXPIRY_S), slowing the whole suite."""
    yield
    drop_mqtt_sessions(SETTINGS, _CLIENT_IDS)
    _CLIENT_IDS.clear()


def config(run: str) -> BridgeConfig:
    _CLIENT_IDS.append(f"test-bridge-{run}")
    return BridgeConfig(client_id=f"test-bridge-{run}", group=f"test{run}", settings=SETTINGS)


async def run_bridge_until(bridge: Bridge, coro_factory) -> object:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(bridge.run())
    try:
        await bridge.wait_connected(15)
        await asyncio.sleep(0.3)  # SUBACK
        return await coro_factory()
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 20)


def test_valid_routed_invalid_deadlettered() -> None:
    run = uuid.uuid4().hex[:8]
    dev = f"wb-{run}"
    topic = mqtt_topic("site-a", "weighbridge", dev, "weighing")
    valid = [encode(weighing(dev, i)) for i in range(20)]
    invalid = [
        (mqtt_topic("site-a", "weighbridge", f"{dev}x", "weighing"), encode(weighing(dev, 100))),  # spoofed
        (topic, b'{"broken json ' + dev.encode()),
        (mqtt_topic("site-a", "weighbridge", dev, "device_status"), encode(weighing(dev, 101))),  # wrong type
        (topic, encode(weighing(dev, 102)).replace(b'"schema":1', b'"schema":9')),
    ]

    async def scenario() -> None:
        await ensure_topics(SETTINGS.kafka_bootstrap, SETTINGS.kafka_partitions)
        offsets = await end_offsets(["ws.weighings", "ws.deposits", DEADLETTER_TOPIC])
        bridge = Bridge(config(run))

        async def body() -> list[tuple[str, bytes | None, bytes, int]]:
            await asyncio.to_thread(publish, [(topic, p) for p in valid] + invalid)
            return await read_with_partitions(offsets, len(valid) + len(invalid), dev.encode())

        found = await run_bridge_until(bridge, body)
        assert isinstance(found, list)
        routed = [(k, v, p) for t, k, v, p in found if t == "ws.weighings"]
        dead = [json.loads(v) for t, _, v, _ in found if t == DEADLETTER_TOPIC]
        # The broker is shared: another pipeline's bridge (another share group) may forward a copy
        # of the same messages, so each message is here at least once, and in order in each record.
        records = [read_messages(v, Weighing) for _, v, _ in routed]
        assert {m.msg_id: m for r in records for m in r} == {m.msg_id: m for m in map(decode, valid)}
        for record in records:
            seqs = [int(m.msg_id.rsplit(":", 1)[1]) for m in record]
            assert seqs == sorted(seqs)  # the device's order
        assert max(map(len, records)) > 1  # batched: several messages per record (issue 14)
        # one partition, the one Kafka's partitioner gives the key site/device (finding 5)
        partition = (murmur2(f"site-a/{dev}".encode()) & 0x7FFFFFFF) % SETTINGS.kafka_partitions
        assert {p for _, _, p in routed} == {partition}
        assert {k for k, _, _ in routed} == {b"~p%d" % partition}
        assert not [t for t, _, _, _ in found if t == "ws.deposits"]
        reasons = sorted(d["reason"] for d in dead)
        assert len(dead) >= len(invalid), reasons  # (another share group on the shared broker: copies)
        assert len({(d["topic"], d["payload"]) for d in dead}) == len(invalid), reasons
        assert any("device_id" in r for r in reasons)
        assert any("malformed JSON" in r for r in reasons)
        assert any("does not match topic event" in r for r in reasons)
        assert any("schema version" in r for r in reasons)
        assert all(d["topic"].startswith("ws/v1/") and d["received_at"] for d in dead)
        assert bridge.stats.acked >= len(valid) + len(invalid)  # (+ others' traffic on the shared broker)

    asyncio.run(scenario())


def test_messages_published_while_bridge_is_down_are_delivered_on_return() -> None:
    run = uuid.uuid4().hex[:8]
    dev = f"wb-{run}"
    topic = mqtt_topic("site-a", "weighbridge", dev, "weighing")

    async def scenario() -> None:
        await ensure_topics(SETTINGS.kafka_bootstrap, SETTINGS.kafka_partitions)
        offsets = await end_offsets(["ws.weighings"])
        first = Bridge(config(run))  # creates the persistent session and its subscription

        async def publish_some() -> None:
            await asyncio.to_thread(publish, [(topic, encode(weighing(dev, i))) for i in range(3)])
            await asyncio.sleep(1.0)

        await run_bridge_until(first, publish_some)
        # Bridge down: these wait in Mosquitto for our session.
        await asyncio.to_thread(publish, [(topic, encode(weighing(dev, i))) for i in range(3, 10)])
        second = Bridge(config(run))

        async def read() -> list[tuple[str, bytes | None, bytes]]:
            return await read_since(offsets, 10, dev.encode())

        found = await run_bridge_until(second, read)
        assert isinstance(found, list)
        seqs = sorted({m.msg_id for m in messages_in(found, "ws.weighings")})
        assert seqs == sorted(f"{dev}:1:{i}" for i in range(10))

    asyncio.run(scenario())


class SmallRecords(Bridge):
    """A producer that refuses any record above 2,000 bytes (aiokafka's max_request_size), as a
    broker with a small max.message.bytes would: a batch of 20 weighings is refused for good."""

    async def _start_producer(self, bootstrap: str) -> Any:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                    max_request_size=2000, client_id=f"ws-bridge-{self.config.client_id}")
        await producer.start()
        return producer


def test_a_batch_record_kafka_refuses_is_split_into_single_messages() -> None:
    run = uuid.uuid4().hex[:8]
    dev = f"wb-{run}"
    topic = mqtt_topic("site-a", "weighbridge", dev, "weighing")
    valid = [encode(weighing(dev, i)) for i in range(20)]

    async def scenario() -> None:
        await ensure_topics(SETTINGS.kafka_bootstrap, SETTINGS.kafka_partitions)
        offsets = await end_offsets(["ws.weighings", DEADLETTER_TOPIC])
        bridge = SmallRecords(config(run))

        async def body() -> list[tuple[str, bytes | None, bytes]]:
            await asyncio.to_thread(publish, [(topic, p) for p in valid])
            return await read_since(offsets, len(valid), dev.encode())

        found = await run_bridge_until(bridge, body)
        assert isinstance(found, list)
        assert not [t for t, _, _ in found if t == DEADLETTER_TOPIC]  # nothing dead-lettered
        got = messages_in(found, "ws.weighings")
        assert {m.msg_id for m in got} == {decode(v).msg_id for v in valid}  # every message, alone
        assert bridge.stats.acked >= len(valid) and bridge.stats.kafka_retries == 0

    asyncio.run(scenario())

"""Issue 11, finding 6, on the real Mosquitto and Kafka: no dead-letter record too big for Kafka.

180,000 bytes of 0x01 on a device topic became a 1,080,200-byte dead-letter record (`\\u0001`
escaping): MessageSizeTooLargeError, retried forever without an MQTT ack; a thousand of them fill
the receive window and stall the bridge. Now the record is bounded and acked at once; and a record
Kafka refuses for good anyway (here: forced by the old unbounded record) is dead-lettered with the
refusal as reason instead of retried.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from contract import decode, encode, mqtt_topic
from contract.topics import DEADLETTER_TOPIC, KAFKA_TOPICS
from stream import bridge as bridge_module
from stream.bridge import Bridge
from stream.deadletter import MAX_RECORD_BYTES, deadletter_record
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

SITE = "site-big"
BIG = b"\x01" * 180_000


class BrokerSideLimit(Bridge):
    """A producer that lets a 1 MB record through, so that Kafka itself refuses it (the broker's
    message.max.bytes), not aiokafka's max_request_size check before sending."""

    async def _start_producer(self, bootstrap: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                    max_request_size=4 * 1024 * 1024,
                                    client_id=f"ws-bridge-{self.config.client_id}")
        await producer.start()
        return producer


def run_one(bridge: Bridge, device: str) -> list[dict[str, Any]]:
    """Publish BIG then ten good weighings of `device`; the dead-letter records of `device`."""
    big_topic = mqtt_topic(SITE, "weighbridge", device, "weighing")
    good = [encode(weighing(device, i, SITE)) for i in range(10)]

    async def scenario() -> list[dict[str, Any]]:
        await ensure_topics(SETTINGS.kafka_bootstrap, SETTINGS.kafka_partitions)
        offsets = await end_offsets([KAFKA_TOPICS["weighing"], DEADLETTER_TOPIC])
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(15)
            await asyncio.sleep(0.3)  # SUBACK
            await asyncio.to_thread(publish, [(big_topic, BIG)] + [(big_topic, p) for p in good])
            found = await read_since(offsets, 1 + len(good), device.encode(), timeout=30)
            assert not task.done(), "the bridge stopped"
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)
        routed = messages_in(found, KAFKA_TOPICS["weighing"])
        assert all(decode(p) in routed for p in good), "the bridge stopped delivering after the big message"
        assert bridge.stats.kafka_retries == 0  # no retry loop
        assert bridge.stats.acked >= 1 + len(good)  # the big message's MQTT ack too
        return [json.loads(v) for t, _, v in found if t == DEADLETTER_TOPIC]

    records = asyncio.run(scenario())
    assert records, "the big message never reached the dead-letter topic"
    for record in records:
        assert record["topic"] == big_topic and record["truncated"] is True
        assert record["payload_bytes"] == len(BIG)
        assert record["payload_sha256"] == hashlib.sha256(BIG).hexdigest()
        assert len(json.dumps(record, ensure_ascii=False).encode()) <= MAX_RECORD_BYTES
    return records


def test_180000_control_bytes_make_one_bounded_dead_letter_record() -> None:
    run = uuid.uuid4().hex[:8]
    records = run_one(Bridge(config(run)), f"wb-{run}")
    assert all("exceeds" in r["reason"] for r in records)


@pytest.mark.parametrize("refused_by", ["aiokafka", "broker"])
def test_a_record_kafka_refuses_is_dead_lettered_not_retried(refused_by: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's record for the big message is forced to the old, unbounded 1 MB size."""
    unbounded = functools.partial(deadletter_record, max_payload_bytes=None)
    monkeypatch.setattr(bridge_module, "deadletter_record",
                        lambda *a, **k: deadletter_record(*a, **k) if k else unbounded(*a))
    run = uuid.uuid4().hex[:8]
    bridge = (Bridge if refused_by == "aiokafka" else BrokerSideLimit)(config(run))
    records = run_one(bridge, f"wb-{run}")
    mine = [r for r in records if "Kafka refused" in r["reason"]]
    assert mine and all("MessageSizeTooLarge" in r["reason"] and "exceeds" in r["reason"] for r in mine)

"""Re-keyed internal records (issue 14): one record per partition, each key on the partition a
record keyed by it alone would get, read back event by event (old single-event records too)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream.agents import manifest, runner
from tests.unit.test_agents_batch import RULES, Event, Harness, Msg


class _Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int | None, bytes]] = []

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append((key, partition, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_partition_of_is_kafkas_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for key in ("桂B12345", "site-a", "lz-jm-incinerator", "x"):
        for n in (1, 4, 12):
            assert runner.partition_of(key, n) == partitioner(key.encode(), list(range(n)), list(range(n)))


def test_by_partition_keeps_order_and_bounds_each_group() -> None:
    groups = runner.by_partition(range(10), lambda i: f"k{i % 3}", most=2)
    assert sorted(i for _, chunk in groups for i in chunk) == list(range(10))
    assert all(len(chunk) <= 2 for _, chunk in groups)
    for p, chunk in groups:
        assert all(runner.partition_of(f"k{i % 3}") == p for i in chunk) and chunk == sorted(chunk)


def arrival(plate: str, n: int) -> dict[str, Any]:
    return {"type": "arrival", "id": f"wb:lz/wb-1:1:{n}", "plate": plate, "ts_ns": n * 10**9, "kg": 1000.0,
            "place": "lz", "source": "weighbridge", "device": "wb-1", "site": "lz", "msg_id": f"wb-1:1:{n}"}


def test_manifest_events_go_one_record_per_partition_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    topic = _Topic()
    monkeypatch.setattr(manifest, "manifest_topic", topic)
    events = [arrival(f"桂B{i % 7:05d}", i) for i in range(40)]
    asyncio.run(manifest.send_events(events))
    assert len(topic.sent) <= 4  # the app's partitions, not one record per event
    for _key, partition, value in topic.sent:
        assert all(runner.partition_of(e["plate"]) == partition for e in json.loads(value))

    h = Harness(monkeypatch, manifest, "plate_state")
    monkeypatch.setattr(manifest, "rules", RULES)
    records = [Event(value, Msg(manifest.MANIFEST_TOPIC, partition=p or 0)) for _, p, value in topic.sent]
    # a record of one event, as a worker before issue 14 wrote them
    single = Event(json.dumps(arrival("桂B00001", 99)).encode(), Msg(manifest.MANIFEST_TOPIC))
    h.run(manifest.match_batch, [*records, single, records[0]])  # the last: a redelivered record
    state = h.tables["plate_state"]
    assert sorted(state) == sorted({e["plate"] for e in events})
    seen = {i for value in state.values() for i in value["seen"]}
    assert seen == {e["id"] for e in events} | {arrival("桂B00001", 99)["id"]}
    assert sorted(h.of("write")) == sorted(state)  # one write per plate for the whole batch

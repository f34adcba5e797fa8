"""A Faust worker's /metrics, /healthz and /readyz, on the real Kafka and InfluxDB (issue 13).

The worker's group starts at the end of the shared topics, so it reads this test's records and
whatever other tests write meanwhile: its counters are checked against what Kafka holds between
the group's start and its committed offsets (counted here, from the records themselves), which is
exactly this test's records when nobody else wrote weighings meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contract import encode
from contract.topics import KAFKA_TOPICS
from stream.topics_admin import ensure_topics
from tests.integration.metricskit import (
    Samples,
    answered,
    free_port,
    get,
    group_offsets,
    ready,
    scrape,
    total,
    value,
    wait_for,
    weighing,
)
from tests.integration.workerkit import skip_backlog, start_worker, stop
from wastestream.foundation.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOPIC = KAFKA_TOPICS["weighing"]
VALID, INVALID = 12, 4


def messages_of(value: bytes | None) -> int:
    """How many messages the worker counts in one record: a batch record's, else one."""
    try:
        from contract.kafka_record import split_record
    except ImportError:  # before batch records (issue 14): one message per record
        return 1
    try:
        return len(split_record(value))
    except Exception:  # an unreadable record is dead-lettered whole: one
        return 1


def offsets(settings: Settings) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    return asyncio.run(group_offsets(settings, settings.faust_app_id, TOPIC))


async def messages_between(settings: Settings, start: dict[TopicPartition, int],
                           end: dict[TopicPartition, int]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        n, left = 0, {tp for tp in start if end[tp] > start[tp]}
        while left:
            for tp, records in (await consumer.getmany(*left, timeout_ms=1000)).items():
                n += sum(messages_of(r.value) for r in records if r.offset < end[tp])
                if await consumer.position(tp) >= end[tp]:
                    left.discard(tp)
        return n
    finally:
        await consumer.stop()


async def produce(settings: Settings, unique: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        site, device = f"obs-{unique}", f"wb-{unique}"
        for i in range(1, VALID + 1):
            await producer.send(TOPIC, encode(weighing(site, device, i)), key=f"{site}/{device}".encode())
        for i in range(INVALID):
            await producer.send(TOPIC, b'{"event": "weighing", "broken": %d' % i, key=device.encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_worker_counts_lag_and_readiness(live_services: Settings, settings: Settings, tmp_path: Path,
                                         unique: str) -> None:
    asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions))
    asyncio.run(skip_backlog(settings))
    start, committed = offsets(settings)
    assert all(committed[tp] == start[tp] for tp in start), (start, committed)
    metrics_port = free_port()
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, WS_METRICS_PORT=str(metrics_port))
    try:
        wait_for(lambda: ready(metrics_port), "the worker ready", 120, proc=proc, log=log)
        first = scrape(metrics_port)
        # the group's only member has every partition
        assert total(first, "ws_kafka_assigned_partitions", topic=TOPIC) == len(start)
        asyncio.run(produce(settings, unique))

        def caught_up() -> bool:
            now = scrape(metrics_port)
            lags = [v for (n, ls), v in now.items()
                    if n == "ws_kafka_consumer_lag" and ("topic", TOPIC) in ls]
            return len(lags) == len(start) and not any(lags) and \
                value(now, "ws_messages_in_total", topic=TOPIC) >= VALID + INVALID

        wait_for(caught_up, "lag 0 on every weighings partition", 90, proc=proc, log=log)

        def quiet() -> tuple[Samples, dict[TopicPartition, int]] | None:
            """A scrape while Kafka's end, the group's commit and the lag agree (other tests may be
            producing weighings right now: then wait for a quiet moment)."""
            end, committed = offsets(settings)
            now = scrape(metrics_port)
            again, committed_again = offsets(settings)
            lags = [v for (n, ls), v in now.items()
                    if n == "ws_kafka_consumer_lag" and ("topic", TOPIC) in ls]
            if end == again == committed == committed_again and not any(lags):
                return now, end
            return None

        after, end = wait_for(quiet, "a quiet moment on the weighings topic", 60, proc=proc, log=log)
        expected = asyncio.run(messages_between(settings, start, end))
        seen_in = value(after, "ws_messages_in_total", topic=TOPIC)
        out = value(after, "ws_messages_out_total", topic=TOPIC)
        dead = value(after, "ws_messages_deadlettered_total", topic=TOPIC)
        assert seen_in == expected, (seen_in, expected)
        assert out + dead == seen_in
        assert out >= VALID and dead >= INVALID
        if expected == VALID + INVALID:  # nobody else wrote weighings meanwhile: exactly ours
            assert (out, dead) == (VALID, INVALID)
        assert value(after, "ws_influx_write_seconds_count") > value(first, "ws_influx_write_seconds_count")
        assert value(after, "ws_influx_points_written_total") >= VALID
        assert value(after, "ws_ready", component="worker") == 1
    finally:
        stop(proc)


def test_worker_without_influxdb_is_not_ready_with_the_reason(live_services: Settings, settings: Settings,
                                                              tmp_path: Path) -> None:
    asyncio.run(skip_backlog(settings))
    metrics_port, nothing = free_port(), free_port()
    log = tmp_path / "worker.log"
    proc = start_worker(dataclasses.replace(settings, influx_url=f"http://127.0.0.1:{nothing}"), log,
                        WS_METRICS_PORT=str(metrics_port))
    try:
        _, body = wait_for(lambda: (lambda r: r if r and "influxdb" in r[1] else None)(
            answered(metrics_port, "/readyz", 503)()), "/readyz naming InfluxDB", 120, proc=proc, log=log)
        assert f"influxdb: http://127.0.0.1:{nothing}/ping unreachable" in body, body
        assert get(metrics_port, "/healthz") == (200, "alive\n")
    finally:
        with contextlib.suppress(Exception):
            stop(proc)

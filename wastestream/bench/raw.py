"""The raw limit of each service alone, measured with the same clients and payloads the pipeline uses.

- Mosquitto: paho publishers → paho subscribers (shared subscription), QoS 1, several processes.
- Kafka: one aiokafka producer (acks=all, idempotent, as the bridge) → one aiokafka consumer.
- InfluxDB: batched line-protocol writes of 5,000 `weighing` lines over HTTP (v1 `/write`).

Each measures delivered messages per second between the first and the last delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt

from contract.codec import encode
from stream.agents.tonnage_points import weighing_point
from stream.sinks.line_protocol import to_line
from wastestream.bench.loadgen import LoadGen, specs_for, weighing
from wastestream.foundation.mqtt import make_client
from wastestream.foundation.settings import Settings


@dataclass(frozen=True)
class Delivery:
    """What a consumer saw: count and the wall-clock times of its first and last message."""

    count: int
    first: float
    last: float

    @staticmethod
    def rate(parts: list[Delivery]) -> float:
        seen = [p for p in parts if p.count]
        if not seen:
            return 0.0
        span = max(p.last for p in seen) - min(p.first for p in seen)
        return sum(p.count for p in seen) / span if span > 0 else 0.0


@dataclass
class RawResult:
    component: str
    msg_per_s: float
    delivered: int
    detail: dict[str, Any]


def _spawn_pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))


# --- Mosquitto -------------------------------------------------------------------------------

def mqtt_subscriber(host: str, port: int, group: str, topic_filter: str, end_at: float,
                    idle_s: float = 2.0) -> Delivery:
    """Count QoS 1 deliveries until `end_at`, or `idle_s` after the flow stops."""
    count, first, last = 0, 0.0, 0.0

    def on_message(_c: mqtt.Client, _u: object, _msg: mqtt.MQTTMessage) -> None:
        nonlocal count, first, last
        last = time.time()
        if not count:
            first = last
        count += 1

    client = make_client(f"{group}-{multiprocessing.current_process().pid}")
    client.on_message = on_message
    client.connect(host, port, keepalive=30)
    client.subscribe(f"$share/{group}/{topic_filter}", qos=1)
    client.loop_start()
    try:
        while time.time() < end_at and not (count and time.time() - last > idle_s):
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return Delivery(count, first, last)


def raw_mosquitto(settings: Settings, run_id: str, duration_s: float, procs: int) -> RawResult:
    """`procs` publishers flat out → `procs` subscribers sharing one subscription, QoS 1."""
    root = f"wsbench/{run_id}/mqtt"
    start_delay = 4.0
    end_at = time.time() + start_delay + duration_s + 20
    with _spawn_pool(procs) as pool:
        subs = [pool.submit(mqtt_subscriber, settings.mqtt_host, settings.mqtt_port, f"rawsub{run_id}",
                            f"{root}/#", end_at) for _ in range(procs)]
        load = LoadGen(specs_for(settings.mqtt_host, settings.mqtt_port, f"r{run_id}m", 0, duration_s,
                                 procs, 50 * procs, topic_root=root, start_delay_s=start_delay))
        published = load.results(timeout=duration_s + 60)
        parts = [f.result(timeout=60) for f in subs]
    sent = sum(r.sent for r in published)
    pub_span = max(r.last_send for r in published) - min(r.first_send for r in published)
    return RawResult("mosquitto", Delivery.rate(parts), sum(p.count for p in parts), {
        "processes": procs, "qos": 1, "published": sent,
        "publish_rate": sent / pub_span if pub_span > 0 else 0.0,
    })


# --- Kafka -----------------------------------------------------------------------------------

def _kafka_payloads(n: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    return [(f"rawk-d{i % 50}".encode(), encode(weighing(f"rawk-d{i % 50}", "rawk-s", 1, i + 1, now)))
            for i in range(n)]


async def _produce(bootstrap: str, topic: str, duration_s: float, max_messages: int,
                   start_at: float) -> Delivery:
    from aiokafka import AIOKafkaProducer

    payloads = _kafka_payloads(1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        first = time.time()
        while sent < max_messages and time.time() - first < duration_s:
            key, value = payloads[sent % len(payloads)]
            await producer.send(topic, value=value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return Delivery(sent, first, time.time())


def kafka_producer(bootstrap: str, topic: str, duration_s: float, max_messages: int,
                   start_at: float) -> Delivery:
    return asyncio.run(_produce(bootstrap, topic, duration_s, max_messages, start_at))


async def _consume(bootstrap: str, topic: str, group: str, end_at: float, idle_s: float) -> Delivery:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    count, first, last = 0, 0.0, 0.0
    try:
        while time.time() < end_at and not (count and time.time() - last > idle_s):
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            n = sum(len(records) for records in batches.values())
            if n:
                last = time.time()
                first = first or last
                count += n
    finally:
        await consumer.stop()
    return Delivery(count, first, last)


def kafka_consumer(bootstrap: str, topic: str, group: str, end_at: float, idle_s: float = 3.0) -> Delivery:
    return asyncio.run(_consume(bootstrap, topic, group, end_at, idle_s))


async def _topic(bootstrap: str, topic: str, partitions: int, create: bool) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        else:
            await admin.delete_topics([topic])
    finally:
        await admin.close()


def raw_kafka(settings: Settings, run_id: str, duration_s: float, max_messages: int = 3_000_000) -> RawResult:
    """One producer process and one consumer process at the same time, on a throw-away topic."""
    topic = f"wsbench.raw.{run_id}"
    asyncio.run(_topic(settings.kafka_bootstrap, topic, settings.kafka_partitions, create=True))
    start_at = time.time() + 4.0
    try:
        with _spawn_pool(2) as pool:
            cons = pool.submit(kafka_consumer, settings.kafka_bootstrap, topic, f"wsbench-raw-{run_id}",
                               start_at + duration_s + 60)
            prod = pool.submit(kafka_producer, settings.kafka_bootstrap, topic, duration_s, max_messages,
                               start_at)
            produced = prod.result(timeout=duration_s + 90)
            consumed = cons.result(timeout=90)
    finally:
        with contextlib.suppress(Exception):  # a left-over bench topic is harmless
            asyncio.run(_topic(settings.kafka_bootstrap, topic, 0, create=False))
    return RawResult("kafka", Delivery.rate([consumed]), consumed.count, {
        "produced": produced.count, "produce_rate": Delivery.rate([produced]),
        "partitions": settings.kafka_partitions,
    })


# --- InfluxDB --------------------------------------------------------------------------------

def influx_bodies(batches: int, batch_size: int) -> list[bytes]:
    """Distinct `weighing` lines (same shape as the pipeline's), `batch_size` per body."""
    base = datetime.now(UTC) - timedelta(hours=1)
    bodies = []
    for b in range(batches):
        lines = []
        for i in range(batch_size):
            n = b * batch_size + i
            w = weighing(f"rawi-d{n % 100}", f"rawi-s{n % 10}", 1, n + 1, base + timedelta(microseconds=n))
            lines.append(to_line(weighing_point(w)))
        bodies.append("\n".join(lines).encode())
    return bodies


async def _influx_writes(url: str, db: str, bodies: list[bytes], batch_size: int, duration_s: float,
                         concurrency: int) -> tuple[int, float]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'}) as r:
            await r.read()
        written = 0
        started = time.time()

        async def writer(k: int) -> None:
            nonlocal written
            i = k
            while time.time() - started < duration_s:
                async with http.post(f"{url}/write", params={"db": db, "precision": "ns"},
                                     data=bodies[i % len(bodies)]) as r:
                    if r.status != 204:
                        raise RuntimeError(f"InfluxDB write: HTTP {r.status} {await r.text()}")
                written += batch_size
                i += concurrency

        await asyncio.gather(*(writer(k) for k in range(concurrency)))
        return written, time.time() - started


def raw_influx(settings: Settings, db: str, duration_s: float, batch_size: int = 5000,
               concurrency: int = 2) -> RawResult:
    bodies = influx_bodies(40, batch_size)
    written, span = asyncio.run(
        _influx_writes(settings.influx_url, db, bodies, batch_size, duration_s, concurrency))
    return RawResult("influxdb", written / span, written, {
        "batch_size": batch_size, "concurrency": concurrency, "distinct_points": len(bodies) * batch_size,
    })


def as_dict(result: RawResult) -> dict[str, Any]:
    return asdict(result)

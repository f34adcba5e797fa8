"""The stream processes' metrics and readiness, through wastestream/foundation/observability.py.

What each process counts (`ws_messages_{in,out,deadlettered}_total{topic}`) and what makes it ready:

- bridge: in = MQTT messages taken (topic `ws/v1/+/+/+/+`), out = records Kafka has, per Kafka topic,
  dead-lettered = those Kafka has on ws.deadletter; ready = MQTT connected and the Kafka producer
  started with a broker connection;
- worker: in = records taken by the agents per source topic (one call per batch), out = records
  acked (their effects durable), dead-lettered = records refused by the contract; lag per partition
  (`ws_kafka_consumer_lag`); ready = partitions assigned and InfluxDB answering /ping.

Only this module and its callers' few hook lines know the metric names: the bridge's and the
agents' internals (rewritten for throughput) keep one call each.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.topics import ALL_KAFKA_TOPICS, DEADLETTER_TOPIC, MQTT_SUBSCRIBE_ALL
from wastestream.foundation import observability
from wastestream.foundation.observability import Check, messages_deadlettered, messages_in, messages_out
from wastestream.foundation.settings import Settings

# --- bridge -------------------------------------------------------------------------------------

def bridge_received(n: int = 1) -> None:
    """`n` MQTT messages taken by the bridge."""
    messages_in.inc(MQTT_SUBSCRIBE_ALL, n)


def bridge_delivered(kafka_topic: str, n: int = 1) -> None:
    """Kafka has `n` of the bridge's messages on `kafka_topic` (ws.deadletter: dead-lettered)."""
    if kafka_topic == DEADLETTER_TOPIC:
        messages_deadlettered.inc(MQTT_SUBSCRIBE_ALL, n)
    else:
        messages_out.inc(kafka_topic, n)


def kafka_producer_ready(producer: Any) -> str | None:
    """None when an aiokafka producer is started, open and connected to a broker."""
    if producer is None:
        return "Kafka producer not started (is Kafka reachable?)"
    if getattr(producer, "_closed", False):
        return "Kafka producer closed"
    conns = getattr(getattr(producer, "client", None), "_conns", None)
    if conns is not None and not any(conn.connected() for conn in list(conns.values())):
        return "no connection to any Kafka broker"
    return None


def bridge_checks(bridge: Any) -> dict[str, Check]:
    """The bridge is ready when it can take messages from MQTT and hand them to Kafka."""
    settings = bridge.config.settings

    def mqtt() -> str | None:
        if bridge._client.is_connected():
            return None
        return f"not connected to {settings.mqtt_host}:{settings.mqtt_port}"

    return {"mqtt": mqtt, "kafka": lambda: kafka_producer_ready(bridge._producer)}


def bridge_endpoint(bridge: Any) -> contextlib.AbstractContextManager[observability.MetricsServer | None]:
    """`with bridge_endpoint(bridge): await bridge.run()` (port from its settings; 0: none)."""
    s = bridge.config.settings
    for topic in ALL_KAFKA_TOPICS:  # every series exists (at 0) from the start
        bridge_delivered(topic, 0)
    bridge_received(0)
    return observability.serving("bridge", s.metrics_port, bridge_checks(bridge), host=s.metrics_host)


# --- workers ------------------------------------------------------------------------------------

def _by_topic(events: Sequence[Any]) -> Iterator[tuple[str, int]]:
    """(topic, how many) of a batch of Faust events, in runs (a batch is mostly one topic)."""
    topic, n = None, 0
    for event in events:
        t = event.message.topic
        if t != topic:
            if n:
                yield topic, n  # type: ignore[misc]
            topic, n = t, 0
        n += 1
    if n:
        yield topic, n  # type: ignore[misc]


def worker_received(events: Sequence[Any]) -> None:
    """A batch of records taken by an agent."""
    for topic, n in _by_topic(events):
        messages_in.inc(topic, n)


def worker_acked(events: Sequence[Any]) -> None:
    """A batch of records acked: their effects are in Kafka and InfluxDB."""
    for topic, n in _by_topic(events):
        messages_out.inc(topic, n)


def worker_deadlettered(topic: str, n: int) -> None:
    """`n` records of `topic` refused by the contract, in ws.deadletter."""
    messages_deadlettered.inc(topic, n)


def http_ok(url: str, timeout_s: float = 2.0) -> str | None:
    """None when `url` answers below 400 within the time-out; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return None if response.status < 400 else f"{url} answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except OSError as exc:
        return f"{url} unreachable: {exc}"


class FaustCollector(Collector):
    """At each scrape, from the Faust app's consumer and monitor: records in per topic and lag.

    Lag per assigned source partition = its high watermark − the group's committed offset (what a
    restart would replay); changelog partitions (tables, standbys) are not the pipeline's lag."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the names are checked against nothing: no other collector yields them

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("ws_kafka_consumer_lag", "Records in Kafka not yet committed by this "
                                "worker's group, per assigned partition", labels=["topic", "partition"])
        assigned = GaugeMetricFamily("ws_kafka_assigned_partitions",
                                     "Source partitions assigned to this worker", labels=["topic"])
        consumer = self.app.consumer
        per_topic: dict[str, int] = {}
        for tp in sorted(_source_partitions(consumer)):
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + 1
            try:
                high = consumer.highwater(tp)
            except Exception:  # being revoked right now
                continue
            committed = consumer._committed_offset.get(tp)
            if high is None:
                continue
            lag.add_metric([tp.topic, str(tp.partition)], float(max(0, high - (committed or 0))))
        for topic, n in sorted(per_topic.items()):
            assigned.add_metric([topic], float(n))
        yield lag
        yield assigned


def _source_partitions(consumer: Any) -> set[Any]:
    try:
        return {tp for tp in consumer.assignment() if not tp.topic.endswith("-changelog")}
    except Exception:  # no consumer yet
        return set()


def worker_checks(app: Any, settings: Settings) -> dict[str, Check]:
    ping = f"{settings.influx_url.rstrip('/')}/ping"

    def partitions() -> str | None:
        if getattr(app, "rebalancing", False):
            return "rebalancing"
        if not _source_partitions(app.consumer):
            return "no partitions assigned (yet, or more workers than partitions)"
        return None

    return {"kafka": partitions, "influxdb": lambda: http_ok(ping)}


def install_worker_endpoint(app: Any, settings: Settings) -> None:
    """Serve the worker's endpoint from its start (a Faust startup task) to its exit."""
    if not settings.metrics_port:
        return

    async def start_endpoint() -> None:
        observability.serve("worker", settings.metrics_port, worker_checks(app, settings),
                            host=settings.metrics_host)

    for topic in ALL_KAFKA_TOPICS:
        if topic != DEADLETTER_TOPIC:
            for counter in (messages_in, messages_out, messages_deadlettered):
                counter.inc(topic, 0)
    app.task(start_endpoint)
    REGISTRY.register(FaustCollector(app))

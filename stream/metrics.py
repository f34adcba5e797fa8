"""The stream processes' metrics and readiness, through wastestream/foundation/observability.py.

What each process counts (`ws_messages_{in,out,deadlettered}_total{topic}`) and what makes it ready:

- bridge: in = MQTT messages taken (topic `ws/v1/+/+/+/+`), out = records Kafka has, per Kafka topic,
  dead-lettered = those Kafka has on ws.deadletter; ready = MQTT connected and the Kafka producer
  started with a broker connection;
- worker: in = messages decoded per source topic (one call per batch), out = the valid ones handed
  to the analyses (durable before their batch is acked), dead-lettered = those the contract
  refused; lag per partition (`ws_kafka_consumer_lag`); ready = source partitions assigned and
  InfluxDB answering /ping.

Only this module and its callers' few hook lines know the metric names: the bridge's and the
agents' internals (rewritten for throughput) keep one call each.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.topics import ALL_KAFKA_TOPICS, DEADLETTER_TOPIC, MQTT_SUBSCRIBE_ALL
from wastestream.foundation import observability
from wastestream.foundation.observability import Check, messages_deadlettered, messages_in, messages_out
from wastestream.foundation.settings import Settings

# --- bridge -------------------------------------------------------------------------------------

_in, _out, _dead = messages_in.counts, messages_out.counts, messages_deadlettered.counts
"""The counters' dicts, added to directly: per message one dict add and no further call."""


def bridge_received(n: int = 1) -> None:
    """`n` MQTT messages taken by the bridge."""
    try:
        _in[MQTT_SUBSCRIBE_ALL] += n
    except KeyError:
        messages_in.inc(MQTT_SUBSCRIBE_ALL, n)


def bridge_delivered(kafka_topic: str, n: int = 1) -> None:
    """Kafka has `n` of the bridge's messages on `kafka_topic` (ws.deadletter: dead-lettered)."""
    try:
        if kafka_topic == DEADLETTER_TOPIC:
            _dead[MQTT_SUBSCRIBE_ALL] += n
        else:
            _out[kafka_topic] += n
    except KeyError:  # the first of its kind
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


def worker_decoded(topic: str, valid: int, rejected: int) -> None:
    """One batch of `topic` decoded: `valid` messages go on to the analyses, `rejected` are in
    ws.deadletter. Counted in messages (a version-2 record holds several)."""
    messages_in.inc(topic, valid + rejected)
    messages_out.inc(topic, valid)
    if rejected:
        messages_deadlettered.inc(topic, rejected)


def pop_metrics_port(args: list[str], default: int) -> tuple[list[str], int]:
    """`--metrics-port N` (or `=N`) taken out of a Faust command line, which does not know it."""
    rest, port, i = [], default, 0
    while i < len(args):
        arg = args[i]
        if arg == "--metrics-port" and i + 1 < len(args):
            port, i = int(args[i + 1]), i + 2
            continue
        if arg.startswith("--metrics-port="):
            port = int(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, port

"""What the metrics cost per message: `python -m wastestream.bench.metrics_overhead [--n N]`.

Times, in this process, exactly the calls the hot paths make (issue 13): the bridge's two per
message (taken, in Kafka), the worker's one per batch, the edge outbox's one per stored batch, the
sink's one per InfluxDB write; next to what they save (a label lookup per message) and to the
bridge's own per-message work (`prepare`: contract validation of a real weighing). It measures
and prints; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from contract import Weighing, encode, mqtt_topic
from contract.events import Direction, WasteCategory
from contract.topics import KAFKA_TOPICS
from edge import metrics as edge_metrics
from stream import metrics
from stream.bridge import Inbound, prepare
from stream.sinks import metrics as sink_metrics

BATCH = 1000


def per_call_ns(fn: Callable[[], object], n: int) -> float:
    """Best of five runs of `n` calls, in ns per call (the minimum: least disturbed by the machine)."""
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9


def weighing_message() -> Inbound:
    w = Weighing(msg_id="wb-1:1:1", device_id="wb-1", site_id="site-a", ts=datetime.now(UTC), ticket_id="T1",
                 plate="桂B12345", direction=Direction.INBOUND, gross_kg=30000.0, tare_kg=12000.0,
                 net_kg=18000.0, category=WasteCategory.KITCHEN, origin="district-3")
    return Inbound(mqtt_topic("site-a", "weighbridge", "wb-1", "weighing"), encode(w), 1, 1, 1, True)


def measure(n: int) -> list[tuple[str, float]]:
    topic = KAFKA_TOPICS["weighing"]
    item = weighing_message()
    counter = {"n": 0}

    def plain_int() -> None:
        counter["n"] += 1

    library = Counter("bench_messages", "", ["topic"], registry=CollectorRegistry())
    child = library.labels(topic=topic)

    def bridge_hooks() -> None:
        metrics.bridge_received()
        metrics.bridge_delivered(topic)

    rows = [
        ("plain dict int += 1 (floor)", per_call_ns(plain_int, n)),
        ("prometheus-client Counter child.inc() (not used)", per_call_ns(child.inc, n)),
        ("... with a label lookup per message (not used)",
         per_call_ns(lambda: library.labels(topic=topic).inc(), n)),
        ("bridge: both hooks per message", per_call_ns(bridge_hooks, n)),
        ("worker: worker_decoded per batch / 1000",
         per_call_ns(lambda: metrics.worker_decoded(topic, BATCH - 1, 1), max(1, n // 10)) / BATCH),
        ("edge: outbox stored() per message", per_call_ns(lambda: edge_metrics.stored(1), n)),
        ("sink: written() per batch write", per_call_ns(lambda: sink_metrics.written(0.01, 500), n)),
        ("bridge: prepare() per message (its own work)", per_call_ns(lambda: prepare(item), max(1, n // 10))),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wastestream.bench.metrics_overhead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="calls per timing run")
    args = parser.parse_args(argv)
    rows = measure(args.n)
    width = max(len(name) for name, _ in rows)
    for name, ns in rows:
        print(f"{name:<{width}}  {ns:8.1f} ns")
    hooks = dict(rows)["bridge: both hooks per message"]
    work = dict(rows)["bridge: prepare() per message (its own work)"]
    print(f"bridge hooks / prepare(): {hooks / work:.1%} of the bridge's per-message validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())

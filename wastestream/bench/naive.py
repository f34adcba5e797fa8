"""The naive baseline: what a user might write instead of the pipeline.

One paho-mqtt subscriber whose `on_message` decodes the message and writes it to InfluxDB
with its own HTTP request (a kept-alive connection: already kinder than `requests.post`).
Measured with the same load generator and the same point shape as the pipeline.
"""

from __future__ import annotations

import http.client
import multiprocessing
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from contract.codec import decode
from contract.events import Weighing
from stream.agents.tonnage_points import weighing_point
from stream.sinks.line_protocol import to_line, to_ns
from wastestream.bench.loadgen import LoadGen, specs_for
from wastestream.bench.stats import rate_between, summarise
from wastestream.foundation.mqtt import make_client
from wastestream.foundation.settings import Settings


@dataclass(frozen=True)
class NaiveOutcome:
    written: int
    failed: int
    marks: list[tuple[float, int]]
    """(time, written so far) once a second: the sustained rate comes from these."""
    latencies_ms: list[float]


def naive_subscriber(host: str, port: int, topic_filter: str, influx_url: str, db: str,
                     end_at: float) -> NaiveOutcome:
    """Subscribe and write each message as it comes, until `end_at`."""
    url = urllib.parse.urlsplit(influx_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 8086, timeout=10)
    path = f"/write?{urllib.parse.urlencode({'db': db, 'precision': 'ns'})}"
    conn.request("POST", f"/query?{urllib.parse.urlencode({'q': f'CREATE DATABASE {db}'})}")
    conn.getresponse().read()
    written, failed = 0, 0
    latencies: list[float] = []
    marks: list[tuple[float, int]] = []

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal written, failed, conn
        w = decode(bytes(msg.payload), Weighing)
        assert isinstance(w, Weighing)
        try:
            conn.request("POST", path, body=to_line(weighing_point(w)).encode())
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            return
        if response.status != 204:
            failed += 1
            return
        written += 1
        latencies.append((time.time_ns() - to_ns(w.ts)) / 1e6)

    client = make_client(f"naive-{multiprocessing.current_process().pid}")
    client.on_message = on_message
    client.connect(host, port, keepalive=30)
    client.subscribe(topic_filter, qos=1)
    client.loop_start()
    try:
        while time.time() < end_at:
            marks.append((time.time(), written))
            time.sleep(1.0)
        marks.append((time.time(), written))
    finally:
        client.disconnect()
        client.loop_stop()
        conn.close()
    return NaiveOutcome(written, failed, marks, latencies)


def run_naive(settings: Settings, run_id: str, db: str, rate: float, duration_s: float,
              procs: int) -> dict[str, object]:
    """Offer `rate` msg/s for `duration_s` to one naive subscriber; report what it sustains."""
    root = f"wsbench/{run_id}/naive"
    start_delay = 4.0
    t0 = time.time() + start_delay
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sub = pool.submit(naive_subscriber, settings.mqtt_host, settings.mqtt_port, f"{root}/#",
                          settings.influx_url, db, t0 + duration_s + 1)
        load = LoadGen(specs_for(settings.mqtt_host, settings.mqtt_port, f"n{run_id}", rate, duration_s,
                                 procs, 100 * procs, topic_root=root, start_delay_s=start_delay))
        sent = sum(r.sent for r in load.results(timeout=duration_s + 60))
        outcome = sub.result(timeout=duration_s + 60)
    warm = min(3.0, duration_s / 4)
    sustained = rate_between(outcome.marks, t0 + warm, t0 + duration_s)
    return {"offered_msg_per_s": rate, "sent": sent, "written": outcome.written, "failed": outcome.failed,
            "msg_per_s": sustained, **summarise(outcome.latencies_ms)}
